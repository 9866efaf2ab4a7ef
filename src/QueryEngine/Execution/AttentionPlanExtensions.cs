using KvDb.Kernels;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Execution;

/// <summary>Running one plan end to end over a pinned layer (select every KV head, then attend), for callers below the executor.</summary>
public static class AttentionPlanExtensions
{
    /// <summary>Selects with <paramref name="plan"/> for every KV head of <paramref name="layer"/>.</summary>
    public static HeadSelection[] SelectAll(this IAttentionPlan plan, LayerSnapshot layer, AttentionQuery query)
    {
        var heads = new HeadSelection[layer.Model.NumKvHeads];
        for (int kv = 0; kv < heads.Length; kv++)
        {
            heads[kv] = plan.Select(layer, query, kv);
        }

        return heads;
    }

    /// <summary>Selects with <paramref name="plan"/> and attends on the CPU; fills <paramref name="output"/> and <paramref name="lse"/> and returns what was read.</summary>
    public static AttentionCounters Execute(this IAttentionPlan plan, LayerSnapshot layer, AttentionQuery query, Span<float> output, Span<float> lse) =>
        SelectionAttention.Run(layer, query, plan.SelectAll(layer, query), gpu: null, output, lse, out _);
}

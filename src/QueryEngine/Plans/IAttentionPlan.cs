using KvDb.QueryEngine.Execution;
using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// A way of choosing the tokens a query attends over a pinned layer, per KV head. A plan only selects: the
/// attend phase (the kernels over the selections, CPU or GPU) is <see cref="Execution.SelectionAttention"/>'s,
/// so a selection is computed once (asking for it back costs nothing), and different KV heads may be
/// selected by different plans.
/// </summary>
public interface IAttentionPlan
{
    /// <summary>The plan's name as reported in stats ("exact", "indexed:block", …).</summary>
    string Name { get; }

    /// <summary>What the plan expects to read for KV head <paramref name="kvHead"/>, before it runs.</summary>
    PlanEstimate Estimate(LayerSnapshot layer, AttentionQuery query, int kvHead);

    /// <summary>The tokens KV head <paramref name="kvHead"/> attends for <paramref name="query"/>, and what finding them read.</summary>
    HeadSelection Select(LayerSnapshot layer, AttentionQuery query, int kvHead);
}

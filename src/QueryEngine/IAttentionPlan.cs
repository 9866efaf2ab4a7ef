using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>A way of answering an attention query over a pinned layer: it chooses tokens and runs the kernel.</summary>
public interface IAttentionPlan
{
    /// <summary>The plan's name as reported in stats ("exact", …).</summary>
    string Name { get; }

    /// <summary>Fills <paramref name="output"/> and <paramref name="lse"/> and returns what was touched.</summary>
    AttentionCounters Execute(LayerSnapshot layer, AttentionQuery query, Span<float> output, Span<float> lse);

    /// <summary>The positions the plan attended per KV head, for requests that ask for them.</summary>
    (long[] Selected, int[] Counts) Selection(LayerSnapshot layer, AttentionQuery query);
}

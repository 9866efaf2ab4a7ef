using System.Diagnostics;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Planning;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Execution;

/// <summary>
/// Runs attention requests against the store: validate, pin the layer (the one store visit), plan, select per
/// KV head, attend, report. The explain record says what was chosen and why.
/// </summary>
public sealed class AttentionExecutor : IDisposable
{
    private readonly IKvStore _store;
    private readonly QueryPlanner _planner;
    private readonly LayerIndexCatalog _catalog;
    private readonly DeviceAttention _device = new();

    /// <summary>
    /// Creates an executor over <paramref name="store"/> with its own index catalog; a persistent store keeps the
    /// catalog's shared index segments under its data directory (DATA/indexes).
    /// </summary>
    public AttentionExecutor(IKvStore store, int segmentTokens = LayerIndexCatalog.DefaultSegmentTokens)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _catalog = new LayerIndexCatalog(store, store.DataDirectory is string data ? Path.Combine(data, "indexes") : null, segmentTokens);
        _planner = new QueryPlanner(_catalog);
    }

    /// <summary>The background-built indexes the sparse plans use.</summary>
    public LayerIndexCatalog Indexes => _catalog;

    /// <summary>Runs exact attention on the GPU tier's mirrors when the store has one.</summary>
    public DeviceAttention Device => _device;

    /// <summary>Waits for background index builds, then frees the GPU backends; dispose the executor before the store it reads.</summary>
    public void Dispose()
    {
        _catalog.Dispose();
        _device.Dispose();
    }

    /// <summary>
    /// Remembers <paramref name="queries"/> (f32 [m, num_query_heads, head_dim], e.g. the prefill's) as sample
    /// queries of the context's layer, for query-guided index builds; throws <see cref="KvDbException"/> for bad input.
    /// </summary>
    public void AddSampleQueries(string contextId, int layer, float[] queries)
    {
        ModelSchema m = _store.GetModel(_store.GetContext(contextId).Model);
        m.CheckLayer(layer);
        m.CheckQueries("sample queries", queries.Length, queries.Length / Math.Max(1, m.NumQueryHeads * m.HeadDim));
        _catalog.Observe(contextId, layer, queries, m.NumQueryHeads * m.HeadDim);
    }

    /// <summary>Answers one request; throws <see cref="KvDbException"/> for bad input.</summary>
    public AttentionResult Attend(AttentionQuery query)
    {
        long started = Stopwatch.GetTimestamp();
        query.Exclude.Validate();
        using LayerSnapshot layer = _store.OpenLayer(query.ContextId, query.Layer);
        ModelSchema m = layer.Model;
        m.CheckQueries("queries", query.Queries.Length, query.NumQueries);
        _catalog.Observe(query.ContextId, query.Layer, query.Queries, m.NumQueryHeads * m.HeadDim);

        PlanChoice choice = _planner.Choose(query.Plan, layer, query.ContextId);
        IAttentionPlan plan = choice.Plan;
        var heads = new HeadSelection[m.NumKvHeads];
        var explained = new HeadExplain[m.NumKvHeads];
        var estimated = default(PlanEstimate);
        for (int kv = 0; kv < heads.Length; kv++)
        {
            PlanEstimate estimate = plan.Estimate(layer, query, kv);
            heads[kv] = plan.Select(layer, query, kv);
            estimated += estimate;
            long attended = heads[kv].IsDense ? estimate.Rows : heads[kv].Positions.Length;
            explained[kv] = new HeadExplain(kv, plan.Name, estimate, heads[kv].Scanned, attended);
        }

        var output = new float[query.Queries.Length];
        var lse = new float[query.NumQueries * m.NumQueryHeads];
        AttentionCounters counters = SelectionAttention.Run(layer, query, heads, _device, output, lse, out DeviceOutcome device);
        (long[] Selected, int[] Counts)? selection = query.ReturnSelection ? Selection(layer, query, heads) : null;

        var explain = new AttentionExplain(
            query.Plan.Kind, plan.Name, choice.Decision, layer.Layer, layer.Tokens, choice.Indexes, explained,
            estimated, counters, device.Site, device.Promoted, device.Blocks, device.Reason);
        double micros = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        var stats = new AttentionStats(plan.Name, counters.TokensScored, counters.TokensAttended, counters.BytesRead, micros, explain);
        return new AttentionResult(output, lse, stats, selection?.Selected, selection?.Counts);
    }

    /// <summary>The attended positions per KV head, concatenated, and how many per head (for return_selection).</summary>
    private static (long[] Selected, int[] Counts) Selection(LayerSnapshot layer, AttentionQuery query, HeadSelection[] heads)
    {
        long total = 0;
        foreach (HeadSelection h in heads)
        {
            total += h.IsDense ? layer.Tokens - query.Exclude.CountWithin(layer.Tokens) : h.Positions.Length;
        }

        if (total > int.MaxValue / 2)
        {
            throw KvDbException.Invalid($"return_selection of {total} (token, KV head) positions is too large; ask without return_selection or exclude more tokens");
        }

        var selected = new long[total];
        var counts = new int[heads.Length];
        int k = 0;
        for (int kv = 0; kv < heads.Length; kv++)
        {
            long[] positions = heads[kv].IsDense ? SelectionAttention.DensePositions(layer.Tokens, query.Exclude) : heads[kv].Positions;
            positions.CopyTo(selected, k);
            k += positions.Length;
            counts[kv] = positions.Length;
        }

        return (selected, counts);
    }
}

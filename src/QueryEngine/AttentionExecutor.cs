using System.Diagnostics;
using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>Runs attention requests against the store: validate, pin the layer, plan, execute, report.</summary>
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
        _planner = new QueryPlanner(_catalog, _device);
    }

    /// <summary>The background-built indexes the sparse plans use.</summary>
    public LayerIndexCatalog Indexes => _catalog;

    /// <summary>Waits for background index builds and frees the device backends; dispose the executor before the store it reads.</summary>
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
        int rowFloats = m.NumQueryHeads * m.HeadDim;
        if (queries.Length == 0 || queries.Length % rowFloats != 0)
        {
            throw KvDbException.Invalid($"sample queries must have shape [m ≥ 1, {m.NumQueryHeads}, {m.HeadDim}] for model \"{m.Name}\", got {queries.Length} values");
        }

        _catalog.Observe(contextId, layer, queries, rowFloats);
    }

    /// <summary>Answers one request; throws <see cref="KvDbException"/> for bad input.</summary>
    public AttentionResult Attend(AttentionQuery query)
    {
        long started = Stopwatch.GetTimestamp();
        if (query.ExcludeStart < 0 || query.ExcludeEnd < 0 || (query.ExcludeEnd != 0 && query.ExcludeEnd < query.ExcludeStart))
        {
            throw KvDbException.Invalid($"exclude must be a half-open range 0 ≤ start ≤ end, got [{query.ExcludeStart}, {query.ExcludeEnd}); send an unset range to exclude nothing");
        }

        using LayerSnapshot layer = _store.OpenLayer(query.ContextId, query.Layer);
        ModelSchema m = layer.Model;
        long expected = (long)query.NumQueries * m.NumQueryHeads * m.HeadDim;
        if (query.NumQueries <= 0 || query.Queries.Length != expected)
        {
            throw KvDbException.Invalid($"queries must have shape [q ≥ 1, {m.NumQueryHeads}, {m.HeadDim}] for model \"{m.Name}\"");
        }

        _catalog.Observe(query, m.NumQueryHeads * m.HeadDim);
        (IAttentionPlan plan, string explain) = _planner.Choose(query.Plan, layer, query.ContextId);
        var output = new float[expected];
        var lse = new float[query.NumQueries * m.NumQueryHeads];
        AttentionCounters counters = plan.Execute(layer, query, output, lse);
        long[]? selected = null;
        int[]? counts = null;
        if (query.ReturnSelection)
        {
            (selected, counts) = plan.Selection(layer, query);
        }

        // Which kernel read the K/V: the device tier's, when the plan ran on the layer's mirrors.
        DeviceRun run = _device.RunOf(layer);
        string tier = run.OnDevice ? "gpu" : "cpu";
        explain = run.OnDevice ? $"{explain} on gpu (promoted {run.Promoted} of {run.Blocks} blocks)"
            : run.Reason.Length == 0 ? $"{explain} on cpu" : $"{explain} on cpu ({run.Reason})";
        double micros = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        var stats = new AttentionStats(plan.Name, counters.TokensScored, counters.TokensAttended, counters.BytesRead, micros, explain) { Tier = tier };
        return new AttentionResult(output, lse, stats, selected, counts);
    }
}

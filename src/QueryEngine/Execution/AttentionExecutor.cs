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
    /// <remarks>
    /// AUTO compares plans by <paramref name="costs"/> (<see cref="CostModel.Calibrate"/> at server start; the
    /// conservative default otherwise) and applies <paramref name="defaultQuality"/> to requests that set no contract.
    /// </remarks>
    public AttentionExecutor(IKvStore store, int segmentTokens = LayerIndexCatalog.DefaultSegmentTokens, CostModel? costs = null, QualityContract? defaultQuality = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
        _catalog = new LayerIndexCatalog(store, store.DataDirectory is string data ? Path.Combine(data, "indexes") : null, segmentTokens);
        _planner = new QueryPlanner(_catalog, costs: costs, defaultQuality: defaultQuality);
    }

    /// <summary>The read costs AUTO compares plans by.</summary>
    public CostModel Costs => _planner.Costs;

    /// <summary>The contract AUTO applies when a request sets none.</summary>
    public QualityContract DefaultQuality => _planner.DefaultQuality;

    /// <summary>What AUTO remembers per (context, layer, KV head) from the queries it answered.</summary>
    public HeadStatistics HeadStatistics => _planner.Statistics;

    /// <summary>
    /// What AUTO remembers of each layer and KV head of context <paramref name="contextId"/>
    /// (<see cref="HeadStatistics.Describe"/> over the context's layers), with the model's layer and KV head counts;
    /// NOT_FOUND for an unknown context. Reads the store's catalog only: no layer is opened.
    /// </summary>
    public ContextHeadReport DescribeHeads(string contextId)
    {
        ContextInfo info = _store.GetContext(contextId);
        ModelSchema m = _store.GetModel(info.Model);
        return new ContextHeadReport(m.NumLayers, m.NumKvHeads, _planner.Statistics.Describe(contextId, m.NumLayers));
    }

    /// <summary>
    /// Forgets what the executor kept of a deleted context: AUTO's head statistics (a new context may take the same id
    /// and must not inherit them), its index entries and its sample queries (memory that churn would otherwise pile up).
    /// </summary>
    public void ForgetContext(string contextId)
    {
        _planner.Statistics.Forget(contextId);
        _catalog.Forget(contextId);
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
        query.Cancellation.ThrowIfSet();
        using LayerSnapshot layer = _store.OpenLayer(query.ContextId, query.Layer, query.Cancellation.Token);
        ModelSchema m = layer.Model;
        m.CheckQueries("queries", query.Queries.Length, query.NumQueries);
        _catalog.Observe(query.ContextId, query.Layer, query.Queries, m.NumQueryHeads * m.HeadDim);
        PlanChoice choice = _planner.Choose(query.Plan, layer, query.ContextId, query.Explained);
        IAttentionPlan plan = choice.Plan;
        var heads = new HeadSelection[m.NumKvHeads];
        var estimates = new PlanEstimate[m.NumKvHeads];
        if (plan is VerifiedSamplingPlan && heads.Length > 1 && Environment.ProcessorCount > 1)
        {
            // AUTO attends while it selects: its heads are independent work, one per core.
            Parallel.For(0, heads.Length, kv =>
            {
                // Returns rather than throws: Parallel.For would wrap the cancellation in an AggregateException.
                if (query.Cancellation.IsSet)
                {
                    return;
                }

                estimates[kv] = plan.Estimate(layer, query, kv);
                heads[kv] = plan.Select(layer, query, kv);
            });
        }
        else
        {
            for (int kv = 0; kv < heads.Length; kv++)
            {
                query.Cancellation.ThrowIfSet();
                estimates[kv] = plan.Estimate(layer, query, kv);
                heads[kv] = plan.Select(layer, query, kv);
            }
        }

        query.Cancellation.ThrowIfSet();
        var output = new float[query.Queries.Length];
        var lse = new float[query.NumQueries * m.NumQueryHeads];
        AttentionCounters counters = SelectionAttention.Run(layer, query, heads, _device, output, lse, out DeviceOutcome device);
        (long[] Selected, int[] Counts)? selection = query.ReturnSelection ? Selection(layer, query, heads) : null;

        long live = layer.Tokens - query.Exclude.CountWithin(layer.Tokens);
        var quality = new HeadQuality[query.NumQueries * m.NumQueryHeads];
        var explained = new HeadExplain[m.NumKvHeads];
        var estimated = default(PlanEstimate);
        for (int kv = 0; kv < heads.Length; kv++)
        {
            HeadSelection h = heads[kv];
            estimated += estimates[kv];
            explained[kv] = Explain(layer, query, choice, kv, h, estimates[kv], live, quality);
        }

        QualityContract? contract = query.Plan.Kind is PlanKind.Auto or PlanKind.Unspecified ? query.Plan.Quality ?? DefaultQuality : null;
        var explain = new AttentionExplain(
            query.Plan.Kind, plan.Name, choice.Decision, layer.Layer, layer.Tokens, choice.Indexes, explained,
            estimated, counters, device.Site, device.Promoted, device.Blocks, device.Reason) { Contract = contract };
        double micros = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        var stats = new AttentionStats(plan.Name, counters.TokensScored, counters.TokensAttended, counters.BytesRead, micros, explain, contract, quality);
        return new AttentionResult(output, lse, stats, selection?.Selected, selection?.Counts);
    }

    /// <summary>Fills KV head <paramref name="kv"/>'s rows of <paramref name="quality"/> and says what the head did.</summary>
    private HeadExplain Explain(LayerSnapshot layer, AttentionQuery query, PlanChoice choice, int kv, HeadSelection h, PlanEstimate estimate, long live, HeadQuality[] quality)
    {
        IAttentionPlan plan = choice.Plan;
        AttentionGeometry g = layer.Model.Geometry;
        int rows = query.NumQueries * g.GroupSize;
        double mass = 0;
        double worst = 0;
        double bound = 0;
        for (int r = 0; r < rows; r++)
        {
            int token = r / g.GroupSize;
            int queryHead = (kv * g.GroupSize) + (r % g.GroupSize);
            HeadQuality q = h.Partial is GroupPartial p ? p.Quality[r]
                : h.IsDense ? HeadQuality.Exact(token, queryHead, kv, live)
                : HeadQuality.Unbounded(token, queryHead, kv, plan.Name, h.Positions.Length);
            quality[(token * g.NumQueryHeads) + queryHead] = q;
            mass += q.MassExact;
            worst = Math.Max(worst, q.PredictedError);
            bound = r == 0 ? q.ErrorBound : Math.Max(bound, q.ErrorBound);
        }

        long attended = h.IsDense ? live : h.Positions.Length;
        double exactMicros = Costs.StreamMicros(live, g.RowBytes);
        double chosenMicros = h.IsDense ? exactMicros : Costs.GatherMicros(attended + h.Sampled.Length, g.RowBytes);
        string name = h.IsDense && plan is VerifiedSamplingPlan ? "exact" : plan.Name;
        return new HeadExplain(kv, name, estimate, h.Scanned, attended, h.Choice, h.Sampled.Length, exactMicros, chosenMicros, mass / rows, worst)
        {
            Actual = HeadReport.Actual(g, query.NumQueries, h, live),
            ErrorBound = bound,
            Alternatives = HeadReport.Alternatives(choice, layer, query, kv, h, estimate, live, Costs),
        };
    }

    /// <summary>The attended positions per KV head, concatenated, and how many per head (for return_selection).</summary>
    private static (long[] Selected, int[] Counts) Selection(LayerSnapshot layer, AttentionQuery query, HeadSelection[] heads)
    {
        long total = 0;
        foreach (HeadSelection h in heads)
        {
            total += h.IsDense ? layer.Tokens - query.Exclude.CountWithin(layer.Tokens) : h.Positions.Length + h.Sampled.Length;
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
            long[] positions = heads[kv].IsDense ? SelectionAttention.DensePositions(layer.Tokens, query.Exclude) : Union(heads[kv].Positions, heads[kv].Sampled);
            positions.CopyTo(selected, k);
            k += positions.Length;
            counts[kv] = positions.Length;
        }

        return (selected, counts);
    }

    /// <summary>The ascending union of two disjoint ascending position lists.</summary>
    private static long[] Union(long[] a, long[] b)
    {
        if (b.Length == 0)
        {
            return a;
        }

        var union = new long[a.Length + b.Length];
        int i = 0, j = 0, k = 0;
        while (i < a.Length || j < b.Length)
        {
            union[k++] = j == b.Length || (i < a.Length && a[i] < b[j]) ? a[i++] : b[j++];
        }

        return union;
    }
}

using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Planning;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// Sparse plans over real store blocks (bf16, 64-token blocks): the engine excludes its local window,
/// KvDb answers the rest from an index, and the merged answer must match exact attention.
/// </summary>
public sealed class IndexedPlanTests : IDisposable
{
    private const int Tokens = 8192;
    private const int Window = 256;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 256L << 20 });
    private readonly SyntheticWorkload _workload = new(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 2, NumQueryHeads = 8 });
    private readonly ITestOutputHelper _output;
    private readonly string _context;

    public IndexedPlanTests(ITestOutputHelper output)
    {
        _output = output;
        _store.CreateModel(new ModelSchema("synthetic", 1, 8, 2, 128, KvDType.BF16, 64, 0));
        _context = _store.CreateContext("synthetic", "test", null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(_context, _workload, KvDType.BF16, 0, Tokens);
    }

    [Theory]
    [InlineData(PlanKind.BlockTopK)]
    [InlineData(PlanKind.CentroidTopK)]
    [InlineData(PlanKind.LshTopK)]
    [InlineData(PlanKind.AnnTopK)]
    public void Sparse_answer_merged_with_the_local_window_matches_exact(PlanKind kind)
    {
        using LayerSnapshot layer = _store.OpenLayer(_context, 0);
        using LayerIndexes indexes = LayerIndexes.Build(layer, PlanRegistry.Default.SpecOf(kind), _workload.Queries(256, 99));
        var plan = new IndexedPlan(indexes);
        const int q = 2;
        float[] queries = _workload.Queries(q, 5);
        var request = new AttentionQuery(_context, 0, queries, q, Tokens - Window, Tokens, new PlanRequest(kind), ReturnSelection: false);

        var sparse = new float[queries.Length];
        var sparseLse = new float[q * 8];
        AttentionCounters counters = plan.Execute(layer, request, sparse, sparseLse);

        // The engine's own local window, exactly, merged with KvDb's partial.
        var window = new float[queries.Length];
        var windowLse = new float[q * 8];
        long[] windowPositions = Enumerable.Range(Tokens - Window, Window).Select(i => (long)i).ToArray();
        for (int kv = 0; kv < 2; kv++)
        {
            GatheredAttentionKernel.Run(layer.Model.Geometry, layer.Blocks, kv, windowPositions, queries, q, ReadOnlySpan<float>.Empty, window, windowLse);
        }

        PartialAttention.MergeInto(sparse, sparseLse, window, windowLse);
        var exact = new float[queries.Length];
        var exactLse = new float[q * 8];
        ExactPlan.Instance.Execute(layer, request with { ExcludeStart = 0, ExcludeEnd = 0 }, exact, exactLse);

        double error = VectorErrors.RelativeL2(sparse, exact);
        double attended = (double)counters.TokensAttended / (2L * q * Tokens);
        _output.WriteLine($"{kind}: merged rel-L2 {error:F4}, attended {attended:P2} of (token, KV head) pairs, scored {counters.TokensScored}");
        Assert.True(error <= 0.25, $"{kind}: merged relative L2 error {error:F4}");
        Assert.True(attended <= 0.10, $"{kind}: attended {attended:P2}");

        HeadSelection[] heads = plan.SelectAll(layer, request);
        long[] selected = heads.SelectMany(h => h.Positions).ToArray();
        int[] counts = heads.Select(h => h.Positions.Length).ToArray();
        Assert.Equal(2, counts.Length);
        Assert.Equal(selected.Length, counts.Sum());
        Assert.Contains(0L, selected);
        Assert.DoesNotContain(selected, p => p >= Tokens - Window);
    }

    [Fact]
    public void Lsh_sampling_with_lsh_heavy_hitters_matches_exact_remote_and_merged()
    {
        using LayerSnapshot layer = _store.OpenLayer(_context, 0);
        float[] samples = _workload.Queries(256, 99);
        using LayerIndexes lsh = LayerIndexes.Build(layer, PlanRegistry.LshSampleSpec, samples);
        using LayerIndexes heavy = LayerIndexes.Build(layer, PlanRegistry.LshHeavySpec, samples);
        const int q = 2;
        float[] queries = _workload.Queries(q, 5);
        var request = new AttentionQuery(_context, 0, queries, q, Tokens - Window, Tokens, new PlanRequest(PlanKind.LshSampling), ReturnSelection: false);
        var plan = new LshSamplingPlan(lsh, heavy);
        var sampled = new float[queries.Length];
        var sampledLse = new float[q * 8];
        AttentionCounters counters = plan.Execute(layer, request, sampled, sampledLse);

        // KvDb's remote partial against exact attention over the same (window-excluded) tokens.
        var remote = new float[queries.Length];
        var remoteLse = new float[q * 8];
        ExactPlan.Instance.Execute(layer, request, remote, remoteLse);
        double remoteError = VectorErrors.RelativeL2(sampled, remote);
        double lseError = 0;
        for (int i = 0; i < remoteLse.Length; i++)
        {
            lseError = Math.Max(lseError, Math.Abs(sampledLse[i] - remoteLse[i]));
        }

        // The engine's view: the partial merged with its exact local window, against exact over everything.
        var window = new float[queries.Length];
        var windowLse = new float[q * 8];
        long[] windowPositions = Enumerable.Range(Tokens - Window, Window).Select(i => (long)i).ToArray();
        for (int kv = 0; kv < 2; kv++)
        {
            GatheredAttentionKernel.Run(layer.Model.Geometry, layer.Blocks, kv, windowPositions, queries, q, ReadOnlySpan<float>.Empty, window, windowLse);
        }

        PartialAttention.MergeInto(sampled, sampledLse, window, windowLse);
        var exact = new float[queries.Length];
        ExactPlan.Instance.Execute(layer, request with { ExcludeStart = 0, ExcludeEnd = 0 }, exact, new float[q * 8]);
        double mergedError = VectorErrors.RelativeL2(sampled, exact);

        // Each query row attends its deterministic set and its own sample (the "≤ 5% of tokens");
        // one gathered pass per KV head serves all q × group rows, so it reads their union.
        double perRow = 0;
        for (int kv = 0; kv < 2; kv++)
        {
            HeadSelection head = plan.Select(layer, request, kv);
            (long[] positions, float[] logWeights) = (head.Positions, head.LogWeights!);
            int rows = q * 4;
            for (int r = 0; r < rows; r++)
            {
                int finite = 0;
                foreach (float w in logWeights.AsSpan(r * positions.Length, positions.Length))
                {
                    finite += float.IsFinite(w) ? 1 : 0;
                }

                perRow += (double)finite / (Tokens - Window) / (2 * rows);
            }
        }

        double gathered = (double)counters.TokensAttended / (2L * q * (Tokens - Window));
        _output.WriteLine($"LSH heavy hitters + LSH sample: remote rel-L2 {remoteError:F5}, max |Δlse| {lseError:F5}, merged rel-L2 {mergedError:F5}; per query row {perRow:P2} of the indexed tokens, gathered per KV head (union of {q * 4} rows) {gathered:P2}");
        Assert.True(remoteError <= 0.1, $"remote relative L2 error {remoteError:F4}");
        Assert.True(mergedError <= 0.1, $"merged relative L2 error {mergedError:F4}");
        Assert.True(lseError <= 0.1, $"LSE error {lseError:F4}");
        Assert.True(perRow <= 0.05, $"attended {perRow:P2} per query row");
        Assert.True(gathered <= 0.15, $"gathered {gathered:P2} per KV head");

        // Without heavy hitters the same plan still runs (sinks exact, everything else sampled).
        var pure = new float[queries.Length];
        new LshSamplingPlan(lsh).Execute(layer, request, pure, new float[q * 8]);
        Assert.All(pure, x => Assert.True(float.IsFinite(x)));
    }

    [Fact]
    public void Lsh_sampling_rejects_a_heavy_hitter_index_hashing_with_the_sampling_seed()
    {
        using LayerSnapshot layer = _store.OpenLayer(_context, 0);
        using LayerIndexes lsh = LayerIndexes.Build(layer, "lsh:Q=0,S=7,L=8");
        using LayerIndexes same = LayerIndexes.Build(layer, "lsh:Q=1,S=7,L=8");
        ArgumentException e = Assert.Throws<ArgumentException>(() => new LshSamplingPlan(lsh, same));
        Assert.Contains("seed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tokens_appended_after_the_index_build_are_attended_exactly()
    {
        LayerIndexes indexes;
        using (LayerSnapshot before = _store.OpenLayer(_context, 0))
        {
            indexes = LayerIndexes.Build(before, "block");
        }

        using (indexes)
        {
            using (IAppendTransaction tx = _store.BeginAppend(_context))
            {
                var extra = new SyntheticWorkload(_workload.Options with { Tokens = Tokens + 100 });
                tx.Append(0, new int[100], extra.KeyBytes(KvDType.BF16, Tokens, 100), extra.ValueBytes(KvDType.BF16, Tokens, 100));
                tx.Commit();
            }

            using LayerSnapshot after = _store.OpenLayer(_context, 0);
            var plan = new IndexedPlan(indexes);
            var request = new AttentionQuery(_context, 0, _workload.Queries(1, 3), 1, 0, 0, new PlanRequest(PlanKind.BlockTopK, Budget: 64), ReturnSelection: true);
            long[] positions = plan.Select(after, request, 0).Positions;
            for (long p = Tokens; p < Tokens + 100; p++)
            {
                Assert.Contains(p, positions);
            }

            Assert.Contains(3L, positions);
        }
    }

    public void Dispose() => _store.Dispose();
}

using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Planning;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.QueryEngine.Tests;

/// <summary>Sparse plan kinds through the executor: exact while the index builds in the background, sparse once it is ready, exact tail for rows appended later.</summary>
public sealed class LayerIndexCatalogTests : IDisposable
{
    private const int Tokens = 8192;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 256L << 20 });
    private readonly SyntheticWorkload _workload = new(new SyntheticWorkloadOptions { Tokens = Tokens + 64, NumKvHeads = 2, NumQueryHeads = 8 });
    private readonly string _context;

    public LayerIndexCatalogTests()
    {
        _store.CreateModel(new ModelSchema("synthetic", 1, 8, 2, 128, KvDType.BF16, 64, 0));
        _context = _store.CreateContext("synthetic", "", null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(_context, _workload, KvDType.BF16, 0, Tokens);
    }

    [Theory]
    [InlineData(PlanKind.BlockTopK, "block")]
    [InlineData(PlanKind.CentroidTopK, "centroid:L2")]
    public async Task Sparse_kind_answers_exactly_until_its_index_is_built_then_sparsely(PlanKind kind, string spec)
    {
        using var executor = new AttentionExecutor(_store);
        float[] q = _workload.Queries(1, 3);
        var request = new AttentionQuery(_context, 0, q, 1, 0, 0, new PlanRequest(kind), false);
        AttentionResult first = executor.Attend(request);
        Assert.Equal("exact", first.Stats.Plan);
        Assert.Equal(PlanDecision.IndexNotReady, first.Stats.Explain.Decision);
        Assert.Equal(IndexState.Building, Assert.Single(first.Stats.Explain.Indexes).State);
        Assert.Equal(2L * Tokens, first.Stats.TokensAttended);

        await executor.Indexes.WhenIdle(_context, 0, spec).WaitAsync(TimeSpan.FromSeconds(60));
        AttentionResult sparse = executor.Attend(request);
        Assert.Equal($"indexed:{spec}", sparse.Stats.Plan);
        IndexStatus covered = Assert.Single(sparse.Stats.Explain.Indexes);
        Assert.Equal((IndexState.Ready, Tokens, Tokens), (covered.State, covered.IndexedTokens, covered.LayerTokens));
        Assert.True(sparse.Stats.TokensAttended < first.Stats.TokensAttended / 5, $"attended {sparse.Stats.TokensAttended}");
        double error = VectorErrors.RelativeL2(sparse.Output, first.Output);
        Assert.True(error <= 0.35, $"sparse vs exact rel-L2 {error:F3}");

        // Rows appended after the build are the unindexed tail: attended exactly, without waiting for a rebuild.
        _store.AppendWorkload(_context, _workload, KvDType.BF16, Tokens, 64);
        AttentionResult grown = executor.Attend(request);
        Assert.Equal($"indexed:{spec}", grown.Stats.Plan);
        IndexStatus grownStatus = Assert.Single(grown.Stats.Explain.Indexes);
        Assert.Equal((IndexState.Ready, Tokens, Tokens + 64), (grownStatus.State, grownStatus.IndexedTokens, grownStatus.LayerTokens));
        Assert.True(grown.Stats.TokensAttended >= sparse.Stats.TokensAttended + (2 * 64));
    }

    [Fact]
    public void Lsh_sampling_and_ann_wait_for_both_indexes_and_unknown_kinds_are_rejected()
    {
        using var executor = new AttentionExecutor(_store);
        float[] q = _workload.Queries(1, 4);
        AttentionResult r = executor.Attend(new AttentionQuery(_context, 0, q, 1, 0, 0, new PlanRequest(PlanKind.LshSampling), false));
        Assert.Equal("exact", r.Stats.Plan);
        Assert.Equal(PlanKind.LshSampling, r.Stats.Explain.Requested);
        Assert.Equal(PlanDecision.IndexNotReady, r.Stats.Explain.Decision);
        Assert.Equal([PlanRegistry.LshSampleSpec, PlanRegistry.LshHeavySpec], r.Stats.Explain.Indexes.Select(s => s.Spec));
        KvDbException e = Assert.Throws<KvDbException>(() => executor.Attend(new AttentionQuery(_context, 0, q, 1, 0, 0, new PlanRequest((PlanKind)42), false)));
        Assert.Equal(KvDbErrorCode.InvalidArgument, e.Code);
    }

    public void Dispose() => _store.Dispose();
}

using System.IO.Hashing;
using System.Runtime.InteropServices;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// The index lifecycle through the executor: shared base segments keyed by content (forks reuse them and
/// build only their suffix), background extension of the suffix, persistence next to a durable store
/// (loaded after a restart, corrupt files moved aside and rebuilt, unreferenced files collected), and
/// queries running while the suffix is extended.
/// </summary>
public sealed class IndexLifecycleTests : IDisposable
{
    private const int Grid = 1024;
    private const int Prefix = 4608; // base [0, 4096) + A's own suffix [4096, 4608)
    private const int Own = 512;
    private const int KvHeads = 2;
    private const int QueryHeads = 8;
    private const int HeadDim = 64;
    private const int NeedleChannel = 37;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);
    private readonly SyntheticWorkload _a = Workload(42);
    private readonly SyntheticWorkload _b = Workload(7);
    private readonly TempDirectory _dir = new("kvdb-idx-");
    private readonly ITestOutputHelper _output;
    private readonly ModelSchema _model = new("life", 1, QueryHeads, KvHeads, HeadDim, KvDType.F32, 64, 0.125f);

    public IndexLifecycleTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Theory]
    [InlineData(PlanKind.BlockTopK, "block")]
    [InlineData(PlanKind.CentroidTopK, "centroid:L2")]
    public async Task A_fork_reuses_the_prefix_base_and_builds_only_its_suffix(PlanKind kind, string spec)
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 256L << 20 });
        store.CreateModel(_model);
        string a = store.CreateContext("life", "t", "a", []).Id;
        store.AppendWorkload(a, _a, KvDType.F32, 0, Prefix);
        using var executor = new AttentionExecutor(store, Grid);
        float[] q = _a.Queries(2, 5);
        await Settle(executor, a, q, kind, spec);
        IndexCatalogCounters afterA = executor.Indexes.Counters;
        Assert.Equal(2, afterA.Builds); // base [0, 4096) and suffix [4096, 4608)
        Assert.Equal(Prefix, afterA.BuiltTokens);

        // Two forks of A, each with its own different 512 tokens.
        string b = store.ForkContext(a, "b").Id;
        string c = store.ForkContext(a, "c").Id;
        store.AppendWorkload(b, _a, KvDType.F32, Prefix, Own);
        store.AppendWorkload(c, _b, KvDType.F32, Prefix, Own);
        AttentionResult sharedB = await Settle(executor, b, q, kind, spec);
        AttentionResult sharedC = await Settle(executor, c, q, kind, spec);
        IndexCatalogCounters afterForks = executor.Indexes.Counters;
        Assert.Equal(2, afterForks.SharedReuses);
        Assert.Equal(afterA.Builds + 2, afterForks.Builds); // one suffix each
        Assert.Equal(afterA.BuiltTokens + (2 * (Prefix + Own - 4096)), afterForks.BuiltTokens);
        IndexStatus statusB = Status(sharedB);
        Assert.Equal((4096L, SegmentOrigin.Shared, 1024L), (statusB.BaseTokens, statusB.BaseOrigin, statusB.SuffixTokens));
        Assert.Equal((long)(Prefix + Own), Status(sharedC).IndexedTokens);
        Assert.Equal((long)(Prefix + Own), Status(sharedC).LayerTokens);

        // The same answer as with the same segments built for b alone, and both close to the f64 reference.
        using (LayerSnapshot layer = store.OpenLayer(b, 0))
        {
            using IndexSegment prefix = IndexSegment.Build(layer, spec, 0, 4096);
            using IndexSegment suffix = IndexSegment.Build(layer, spec, 4096, Prefix + Own);
            using var unshared = new LayerIndexes(spec, [prefix, suffix], ownsSegments: false);
            var output = new float[q.Length];
            var lse = new float[2 * QueryHeads];
            new IndexedPlan(unshared).Execute(layer, new AttentionQuery(b, 0, q, 2, 0, 0, new PlanRequest(kind), false), output, lse);
            Assert.Equal(output, sharedB.Output);
            Assert.Equal(lse, sharedB.Lse);
        }
        foreach ((AttentionResult r, SyntheticWorkload suffixData) in new[] { (sharedB, _a), (sharedC, _b) })
        {
            (double[] o, _) = Reference(suffixData, q);
            double error = ReferenceAttention.RelativeL2(r.Output, o);
            _output.WriteLine($"{spec}: rel-L2 vs f64 reference {error:F4}, attended {r.Stats.TokensAttended}");
            Assert.True(error <= 0.35, $"{spec}: sparse vs f64 reference rel-L2 {error:F4}");
            Assert.True(r.Stats.TokensAttended < 2L * KvHeads * (Prefix + Own) / 4, $"attended {r.Stats.TokensAttended}");
        }
    }

    [Theory]
    [InlineData("block")]
    [InlineData("centroid:L2")]
    public void A_base_and_a_suffix_select_no_more_than_the_budget_per_query_row_keeping_the_best_by_exact_score(string spec)
    {
        const int tokens = 5120;
        const int budget = 48;
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 256L << 20 });
        store.CreateModel(_model);
        string a = store.CreateContext("life", "t", "a", []).Id;
        store.AppendWorkload(a, _a, KvDType.F32, 0, tokens);
        using LayerSnapshot layer = store.OpenLayer(a, 0);
        using IndexSegment prefix = IndexSegment.Build(layer, spec, 0, 4096);
        using IndexSegment suffix = IndexSegment.Build(layer, spec, 4096, tokens);
        using var view = new LayerIndexes(spec, [prefix, suffix], ownsSegments: false);
        float[] q = _a.Queries(1, 11);
        var query = new AttentionQuery(a, 0, q, 1, 0, 0, new PlanRequest(PlanKind.BlockTopK, budget), false);
        var plan = new IndexedPlan(view);
        int group = QueryHeads / KvHeads;
        var keys = new float[tokens * HeadDim];
        var positions = new long[tokens];
        for (int kv = 0; kv < KvHeads; kv++)
        {
            long[] selected = plan.Select(layer, query, kv).Positions;
            Assert.True(selected.Length <= (group * budget) + AttentionSinks.Count, $"{spec}: {selected.Length} positions for {group} rows at budget {budget}");
            var chosen = new HashSet<long>(selected);
            KvBlockReader.ReadHeadRows(layer.Model.Geometry, layer.Blocks, kv, values: false, keys, positions);

            // Per row: whatever the segments offered beyond the budget, the best offered by exact q·k (f64) are kept.
            for (int r = 0; r < group; r++)
            {
                ReadOnlySpan<float> row = q.AsSpan(((kv * group) + r) * HeadDim, HeadDim);
                var offered = new HashSet<long>();
                var found = new long[budget];
                foreach (IndexSegment segment in view.Segments)
                {
                    int got = segment[kv].Candidates(row, new Index.SearchParameters(budget), found, out _);
                    offered.UnionWith(found.AsSpan(0, got).ToArray());
                }

                Assert.True(offered.Count > budget, $"{spec}: the two segments offered only {offered.Count} candidates; the cut is not exercised");
                var ranked = new List<(double Score, long Position)>();
                foreach (long p in offered)
                {
                    double s = 0;
                    for (int i = 0; i < HeadDim; i++)
                    {
                        s += (double)row[i] * keys[(p * HeadDim) + i];
                    }

                    ranked.Add((s, p));
                }

                ranked.Sort((x, y) => y.Score.CompareTo(x.Score));
                for (int i = 0; i < budget - 1; i++)
                {
                    // One rank of slack: f32 and f64 may order two nearly equal scores differently.
                    Assert.Contains(ranked[i].Position, chosen);
                }
            }
        }
    }

    [Fact]
    public void Lsh_sampling_over_a_base_and_a_suffix_matches_exact()
    {
        // The setting of IndexedPlanTests' single-index sampling test, split into two segments.
        const int tokens = 8192;
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 256L << 20 });
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = 2, NumQueryHeads = 8 });
        store.CreateModel(new ModelSchema("synthetic", 1, 8, 2, 128, KvDType.BF16, 64, 0));
        string c = store.CreateContext("synthetic", "test", null, []).Id;
        store.AppendWorkload(c, workload, KvDType.BF16, 0, tokens);

        using LayerSnapshot layer = store.OpenLayer(c, 0);
        float[] samples = workload.Queries(256, 99);
        using IndexSegment lshBase = IndexSegment.Build(layer, "lsh:Q=0", 0, 4096, samples);
        using IndexSegment lshSuffix = IndexSegment.Build(layer, "lsh:Q=0", 4096, tokens, samples);
        using IndexSegment graphBase = IndexSegment.Build(layer, "graph", 0, 4096, samples);
        using IndexSegment graphSuffix = IndexSegment.Build(layer, "graph", 4096, tokens, samples);
        using var lsh = new LayerIndexes("lsh:Q=0", [lshBase, lshSuffix], ownsSegments: false);
        using var graph = new LayerIndexes("graph", [graphBase, graphSuffix], ownsSegments: false);
        const int q = 2;
        float[] queries = workload.Queries(q, 5);
        var request = new AttentionQuery(c, 0, queries, q, 0, 0, new PlanRequest(PlanKind.LshSampling), ReturnSelection: false);
        var sampled = new float[queries.Length];
        var sampledLse = new float[q * 8];
        new LshSamplingPlan(lsh, graph).Execute(layer, request, sampled, sampledLse);

        var keys = new float[tokens * 2 * 128];
        var values = new float[keys.Length];
        workload.FillKeys(0, tokens, keys);
        workload.FillValues(0, tokens, values);
        (double[] o, double[] lse) = ReferenceAttention.Compute(keys, values, queries, q, 8, 2, 128, layer.Model.SoftmaxScale);
        double error = ReferenceAttention.RelativeL2(sampled, o);
        double lseError = ReferenceAttention.MaxAbsError(sampledLse, lse);
        _output.WriteLine($"LSH sampling over 2 segments + graph heavy hitters: rel-L2 {error:F4}, max |Δlse| {lseError:F4}");
        Assert.True(error <= 0.1, $"relative L2 error {error:F4}");
        Assert.True(lseError <= 0.2, $"LSE error {lseError:F4}");
    }

    [Fact]
    public async Task The_suffix_grows_by_extension_and_finds_the_new_tokens()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 256L << 20 });
        store.CreateModel(_model);
        string a = store.CreateContext("life", "t", "a", []).Id;
        store.AppendWorkload(a, _a, KvDType.F32, 0, 4096 + 512);
        using var executor = new AttentionExecutor(store, Grid);
        float[] q = _a.Queries(1, 9);
        await Settle(executor, a, q, PlanKind.BlockTopK, "block");
        IndexCatalogCounters before = executor.Indexes.Counters;

        AppendWithNeedle(store, a, 4096 + 512, 512, 4096 + 700);
        float[] needle = NeedleQuery();
        AttentionResult grown = await Settle(executor, a, needle, PlanKind.BlockTopK, "block", budget: 64);
        IndexCatalogCounters after = executor.Indexes.Counters;
        Assert.Equal(before.Builds, after.Builds);
        Assert.Equal(before.Extends + 1, after.Extends);
        Assert.Equal(512, after.ExtendedTokens - before.ExtendedTokens);
        Assert.Equal((5120L, 5120L, 1024L), (Status(grown).IndexedTokens, Status(grown).LayerTokens, Status(grown).SuffixTokens));

        // Nothing is tail any more, so a new position in the selection came from the extended index.
        Assert.Contains(4096L + 700, grown.Selected!);
    }

    [Fact]
    public async Task Indexes_over_rows_that_were_rolled_back_are_never_served()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 256L << 20 });
        store.CreateModel(_model);
        string a = store.CreateContext("life", "t", "a", []).Id;
        store.AppendWorkload(a, _a, KvDType.F32, 0, 4096);
        using var executor = new AttentionExecutor(store, Grid);
        float[] q = _a.Queries(1, 3);
        await Settle(executor, a, q, PlanKind.BlockTopK, "block");
        using (IAppendTransaction tx = store.BeginAppend(a))
        {
            // Readers see uncommitted rows, so the catalog indexes them; then the stream is rolled back.
            var ids = new int[1024];
            _a.FillTokenIds(4096, ids);
            tx.Append(0, ids, _a.KeyBytes(KvDType.F32, 4096, 1024), _a.ValueBytes(KvDType.F32, 4096, 1024));
            AttentionResult seen = await Settle(executor, a, q, PlanKind.BlockTopK, "block");
            Assert.Equal((5120L, 5120L), (Status(seen).IndexedTokens, Status(seen).LayerTokens));
        }

        store.AppendWorkload(a, _b, KvDType.F32, 4096, 1024);
        IndexCatalogCounters before = executor.Indexes.Counters;
        AttentionResult rewritten = executor.Attend(new AttentionQuery(a, 0, q, 1, 0, 0, new PlanRequest(PlanKind.BlockTopK), false));
        Assert.Equal("exact", rewritten.Stats.Plan);
        Assert.True(Status(rewritten).Stale);
        Assert.Equal(PlanDecision.IndexNotReady, rewritten.Stats.Explain.Decision);

        AttentionResult settled = await Settle(executor, a, q, PlanKind.BlockTopK, "block");
        IndexCatalogCounters after = executor.Indexes.Counters;
        Assert.Equal("indexed:block", settled.Stats.Plan);
        Assert.Equal(before.Builds + 1, after.Builds); // only the new suffix: the base is still the same blocks
        Assert.Equal(1024, after.BuiltTokens - before.BuiltTokens);
        (double[] o, _) = ReferenceOf(_b, q, 5120);
        Assert.True(ReferenceAttention.RelativeL2(settled.Output, o) <= 0.35);
    }

    [Fact]
    public async Task Indexes_are_loaded_after_a_restart_not_rebuilt()
    {
        float[] q = _a.Queries(2, 5);
        AttentionResult before;
        using (KvStore store = Durable())
        {
            store.CreateModel(_model);
            string a = store.CreateContext("life", "t", "a", []).Id;
            store.AppendWorkload(a, _a, KvDType.F32, 0, 4096);
            using var executor = new AttentionExecutor(store, Grid);
            before = await Settle(executor, a, q, PlanKind.CentroidTopK, "centroid:L2");
            Assert.Equal(1, executor.Indexes.Counters.SavedFiles);
        }

        Assert.Single(Directory.GetFiles(Path.Combine(_dir.Path, "indexes"), "*.kix"));
        using (KvStore store = Durable())
        {
            using var executor = new AttentionExecutor(store, Grid);
            AttentionResult after = await Settle(executor, "a", q, PlanKind.CentroidTopK, "centroid:L2");
            IndexCatalogCounters counters = executor.Indexes.Counters;
            Assert.Equal(1, counters.Loads);
            Assert.Equal(0, counters.Builds);
            Assert.Equal((4096L, SegmentOrigin.LoadedFromDisk), (Status(after).BaseTokens, Status(after).BaseOrigin));
            Assert.Equal(before.Output, after.Output);
            Assert.Equal(before.Lse, after.Lse);
        }
    }

    [Theory]
    [InlineData("flipped byte", "checksum mismatch")]
    [InlineData("other version", "version 2 is not supported")]
    public async Task A_corrupt_index_file_is_reported_moved_aside_and_rebuilt(string damage, string reason)
    {
        float[] q = _a.Queries(2, 5);
        using (KvStore store = Durable())
        {
            store.CreateModel(_model);
            string a = store.CreateContext("life", "t", "a", []).Id;
            store.AppendWorkload(a, _a, KvDType.F32, 0, 4096);
            using var executor = new AttentionExecutor(store, Grid);
            await Settle(executor, a, q, PlanKind.BlockTopK, "block");
        }

        string file = Assert.Single(Directory.GetFiles(Path.Combine(_dir.Path, "indexes"), "*.kix"));
        byte[] bytes = File.ReadAllBytes(file);
        if (damage == "flipped byte")
        {
            bytes[bytes.Length / 2] ^= 0x40;
        }
        else
        {
            // A well-formed file of another format version (valid checksum): still never served.
            BitConverter.TryWriteBytes(bytes.AsSpan(4), 2);
            BitConverter.TryWriteBytes(bytes.AsSpan(bytes.Length - 8), XxHash3.HashToUInt64(bytes.AsSpan(0, bytes.Length - 8)));
        }

        File.WriteAllBytes(file, bytes);
        using (KvStore store = Durable())
        {
            using var executor = new AttentionExecutor(store, Grid);
            AttentionResult r = await Settle(executor, "a", q, PlanKind.BlockTopK, "block");
            IndexCatalogCounters counters = executor.Indexes.Counters;
            Assert.Equal(1, counters.CorruptFiles);
            Assert.Equal(0, counters.Loads);
            Assert.Equal(1, counters.Builds);
            IndexFileProblem problem = Status(r).Problem!;
            Assert.Equal(IndexFileProblemKind.Unreadable, problem.Kind);
            Assert.Equal(Path.GetFileName(file), problem.File);
            Assert.NotNull(problem.MovedAsideTo);
            Assert.Contains(reason, problem.Reason, StringComparison.Ordinal);
            Assert.Equal(problem, Assert.Single(executor.Indexes.Problems));
            Assert.Equal("indexed:block", r.Stats.Plan);
        }

        Assert.Single(Directory.GetFiles(Path.Combine(_dir.Path, "indexes"), "*.kix.corrupt-*"));
        Assert.Single(Directory.GetFiles(Path.Combine(_dir.Path, "indexes"), "*.kix"));
    }

    [Fact]
    public async Task Index_files_live_while_any_context_holds_their_blocks()
    {
        float[] q = _a.Queries(1, 5);
        string indexes = Path.Combine(_dir.Path, "indexes");
        using (KvStore store = Durable())
        {
            store.CreateModel(_model);
            string a = store.CreateContext("life", "t", "a", []).Id;
            store.AppendWorkload(a, _a, KvDType.F32, 0, 4096);
            store.ForkContext(a, "b");
            using var executor = new AttentionExecutor(store, Grid);
            await Settle(executor, a, q, PlanKind.BlockTopK, "block");
            Assert.True(store.DeleteContext(a));
            Assert.Equal(0, executor.Indexes.CollectGarbage()); // b still starts with those blocks
            Assert.Single(Directory.GetFiles(indexes, "*.kix"));
            Assert.True(store.DeleteContext("b"));
        }

        using (KvStore store = Durable())
        {
            using var executor = new AttentionExecutor(store, Grid);
            await executor.Indexes.WhenBackgroundWorkDone().WaitAsync(Patience);
            Assert.Equal(1, executor.Indexes.Counters.CollectedFiles); // collected at start: nobody holds the blocks
            Assert.Empty(Directory.GetFiles(indexes, "*.kix"));
        }
    }

    [Fact]
    public async Task Queries_run_while_the_suffix_is_extended()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 256L << 20 });
        store.CreateModel(_model);
        string a = store.CreateContext("life", "t", "a", []).Id;
        store.AppendWorkload(a, _a, KvDType.F32, 0, 4096);
        using var executor = new AttentionExecutor(store, Grid);
        float[] q = _a.Queries(1, 3);
        await Settle(executor, a, q, PlanKind.BlockTopK, "block");

        using var stop = new CancellationTokenSource();
        int sparse = 0;
        Task queries = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                AttentionResult r = executor.Attend(new AttentionQuery(a, 0, q, 1, 0, 0, new PlanRequest(PlanKind.BlockTopK), false));
                Assert.All(r.Output, x => Assert.True(float.IsFinite(x)));
                sparse += r.Stats.Plan == "indexed:block" ? 1 : 0;
            }
        });

        for (int t = 4096; t < 4096 + 2048; t += 256)
        {
            store.AppendWorkload(a, _a, KvDType.F32, t, 256);
            await Task.Delay(20);
        }

        await executor.Indexes.WhenIdle(a, 0, "block").WaitAsync(Patience);
        await stop.CancelAsync();
        await queries.WaitAsync(Patience);
        AttentionResult last = await Settle(executor, a, q, PlanKind.BlockTopK, "block");
        Assert.Equal((6144L, 6144L), (Status(last).IndexedTokens, Status(last).LayerTokens));
        Assert.True(executor.Indexes.Counters.Extends >= 1, $"extends {executor.Indexes.Counters.Extends}");
        Assert.True(sparse > 0);
        (double[] o, _) = Reference(_a, q, 6144);
        Assert.True(ReferenceAttention.RelativeL2(last.Output, o) <= 0.35);
    }

    private static IndexStatus Status(AttentionResult r) => Assert.Single(r.Stats.Explain.Indexes);

    public void Dispose() => _dir.Dispose();

    private static SyntheticWorkload Workload(ulong seed) => new(new SyntheticWorkloadOptions
    {
        Tokens = 8192,
        NumKvHeads = KvHeads,
        NumQueryHeads = QueryHeads,
        HeadDim = HeadDim,
        Seed = seed,
    });

    /// <summary>Asks until the catalog has nothing left to do for the layer, then returns the settled answer.</summary>
    private static async Task<AttentionResult> Settle(AttentionExecutor executor, string context, float[] q, PlanKind kind, string spec, long budget = 0)
    {
        var request = new AttentionQuery(context, 0, q, q.Length / (QueryHeads * HeadDim), 0, 0, new PlanRequest(kind, Budget: budget), ReturnSelection: true);
        for (int i = 0; i < 10; i++)
        {
            executor.Attend(request);
            await executor.Indexes.WhenIdle(context, 0, spec).WaitAsync(Patience);
        }

        return executor.Attend(request);
    }

    /// <summary>f64 attention over the prefix of workload A followed by <paramref name="suffix"/>'s tokens [Prefix, tokens).</summary>
    private (double[] Output, double[] Lse) Reference(SyntheticWorkload suffix, float[] q, int tokens = Prefix + Own) =>
        ReferenceOf(suffix, q, tokens, Prefix);

    /// <summary>f64 attention over workload A's tokens [0, prefix) followed by <paramref name="suffix"/>'s tokens [prefix, tokens).</summary>
    private (double[] Output, double[] Lse) ReferenceOf(SyntheticWorkload suffix, float[] q, int tokens, int prefixTokens = 4096)
    {
        int row = KvHeads * HeadDim;
        var keys = new float[tokens * row];
        var values = new float[tokens * row];
        int prefix = Math.Min(prefixTokens, tokens);
        _a.FillKeys(0, prefix, keys);
        _a.FillValues(0, prefix, values);
        if (tokens > prefix)
        {
            suffix.FillKeys(prefix, tokens - prefix, keys.AsSpan(prefix * row));
            suffix.FillValues(prefix, tokens - prefix, values.AsSpan(prefix * row));
        }

        return ReferenceAttention.Compute(keys, values, q, q.Length / (QueryHeads * HeadDim), QueryHeads, KvHeads, HeadDim, _model.SoftmaxScale);
    }

    /// <summary>Appends workload A's tokens with the key of <paramref name="needle"/> replaced by a large spike on channel <see cref="NeedleChannel"/> (every KV head).</summary>
    private void AppendWithNeedle(IKvStore store, string context, int start, int count, int needle)
    {
        var ids = new int[count];
        _a.FillTokenIds(start, ids);
        var keys = new float[count * KvHeads * HeadDim];
        var values = new float[keys.Length];
        _a.FillKeys(start, count, keys);
        _a.FillValues(start, count, values);
        for (int kv = 0; kv < KvHeads; kv++)
        {
            keys[((((needle - start) * KvHeads) + kv) * HeadDim) + NeedleChannel] = 40f;
        }

        using IAppendTransaction tx = store.BeginAppend(context);
        tx.Append(0, ids, MemoryMarshal.AsBytes(keys.AsSpan()), MemoryMarshal.AsBytes(values.AsSpan()));
        tx.Commit();
    }

    /// <summary>A query that only looks along channel <see cref="NeedleChannel"/>, on every head.</summary>
    private static float[] NeedleQuery()
    {
        var q = new float[QueryHeads * HeadDim];
        for (int h = 0; h < QueryHeads; h++)
        {
            q[(h * HeadDim) + NeedleChannel] = 1f;
        }

        return q;
    }

    private KvStore Durable() => new(new StoreOptions { DataDirectory = _dir.Path, CpuBudgetBytes = 256L << 20, MaintenanceInterval = TimeSpan.Zero });
}

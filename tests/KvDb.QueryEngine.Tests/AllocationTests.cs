using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// What one Attend allocates on the calling thread, on the exact and the indexed path: nothing per stored token.
/// The same request against a 4K and a 16K context must allocate the same (up to a little slack), and not much
/// beyond the result arrays it returns. Budgets are fixed, so the indexed selection does not grow with the context.
/// </summary>
public sealed class AllocationTests : IDisposable
{
    private const int Small = 4096;
    private const int Large = 16384;
    private const int Huge = 65536;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 512L << 20, MaintenanceInterval = TimeSpan.Zero });
    private readonly SyntheticWorkload _workload = new(new SyntheticWorkloadOptions { Tokens = Huge, NumKvHeads = 2, NumQueryHeads = 8, HeadDim = 64 });
    private readonly ITestOutputHelper _output;

    public AllocationTests(ITestOutputHelper output)
    {
        _output = output;
        _store.CreateModel(new ModelSchema("alloc", 1, 8, 2, 64, KvDType.BF16, 64, 0));
    }

    [Fact]
    public void Exact_attend_allocates_nothing_per_token()
    {
        using var executor = new AttentionExecutor(_store);
        // Both contexts are large enough for the kernel's parallel path (token-range chunks on the thread pool),
        // whose task bookkeeping is a constant per call; a 4K context would run inline and allocate less.
        long small = Measure(executor, Load(Large), PlanKind.Exact, budget: 0);
        long large = Measure(executor, Load(Huge), PlanKind.Exact, budget: 0);
        long result = ResultBytes();
        _output.WriteLine($"exact: {small} B at {Large} tokens, {large} B at {Huge} tokens (result arrays {result} B)");
        Assert.InRange(large - small, -512, 512);
        Assert.True(large < result + (8 << 10), $"exact Attend allocated {large} B");
    }

    [Theory]
    [InlineData(PlanKind.BlockTopK, "block")]
    [InlineData(PlanKind.CentroidTopK, "centroid:L2")]
    public async Task Indexed_attend_allocates_for_its_selection_not_for_the_context(PlanKind kind, string spec)
    {
        using var executor = new AttentionExecutor(_store);
        string small = Load(Small);
        string large = Load(Large);
        foreach (string context in new[] { small, large })
        {
            executor.Attend(new AttentionQuery(context, 0, _workload.Queries(1, 3), 1, 0, 0, new PlanRequest(kind, 32), false));
            await executor.Indexes.WhenIdle(context, 0, spec).WaitAsync(TimeSpan.FromSeconds(60));
        }

        long smallBytes = Measure(executor, small, kind, budget: 32);
        long largeBytes = Measure(executor, large, kind, budget: 32);
        _output.WriteLine($"{spec}: {smallBytes} B at {Small} tokens, {largeBytes} B at {Large} tokens");
        Assert.InRange(largeBytes - smallBytes, -2048, 2048);
        Assert.True(largeBytes < 32 << 10, $"{spec} Attend allocated {largeBytes} B");
    }

    public void Dispose() => _store.Dispose();

    private string Load(int tokens)
    {
        string context = _store.CreateContext("alloc", "", null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(context, _workload, KvDType.BF16, 0, tokens);
        return context;
    }

    private long Measure(AttentionExecutor executor, string context, PlanKind kind, long budget)
    {
        // The sample-query log is full first, so remembering the request's queries allocates nothing.
        executor.AddSampleQueries(context, 0, _workload.Queries(256, 9));
        var query = new AttentionQuery(context, 0, _workload.Queries(1, 5), 1, 0, 0, new PlanRequest(kind, budget), false);
        long least = long.MaxValue;
        for (int i = 0; i < 8; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            AttentionResult r = executor.Attend(query);
            long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(kind == PlanKind.Exact ? "exact" : "indexed:", r.Stats.Plan[..(kind == PlanKind.Exact ? 5 : 8)]);
            least = Math.Min(least, bytes);
        }

        return least;
    }

    private static long ResultBytes() => ((1 * 8 * 64) + (1 * 8)) * sizeof(float);
}

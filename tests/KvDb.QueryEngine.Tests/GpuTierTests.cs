using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// The store's GPU tier through the executor. Without libkvdbcuda.so or a GPU (CI, developer machines) a GPU
/// budget must turn itself off with a reason and every query must run on the CPU kernel; the device cases
/// (<see cref="StoreGpuChecks"/>) are then skipped. The GPU runner runs the same cases on the device machine.
/// </summary>
public sealed class GpuTierTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void Gpu_budget_without_cuda_falls_back_to_cpu_with_a_reason()
    {
        Skip.If(CudaRuntime.IsAvailable, "CUDA is available here; the device checks cover this store");
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 64L << 20, GpuBudgetBytes = 16L << 20, MaintenanceInterval = TimeSpan.Zero });
        Assert.StartsWith("gpu tier off:", store.GpuTierStatus, StringComparison.Ordinal);
        Assert.Contains("unavailable", store.GpuTierStatus, StringComparison.Ordinal);
        Assert.Null(store.DeviceTier);
        Assert.Null(store.Blocks.Device);
        Assert.DoesNotContain(store.GetStats().Tiers, t => t.Name == "gpu");

        (string ctx, SyntheticWorkload w) = Load(store, 150);
        float[] q = w.Queries(1, 3);
        using var executor = new AttentionExecutor(store);
        AttentionResult r = executor.Attend(new AttentionQuery(ctx, 0, q, 1, 0, 0, new PlanRequest(PlanKind.Exact), false));
        Assert.Equal("cpu", r.Stats.Tier);
        Assert.Equal((ExecutionSite.Cpu, "the gpu tier is off"), (r.Stats.Explain.Site, r.Stats.Explain.DeviceReason));

        using LayerSnapshot layer = store.OpenLayer(ctx, 0);
        Assert.Null(layer.TryOpenDevice());
        Assert.Null(layer.Device);
        Assert.Equal("the gpu tier is off", layer.DeviceReason);

        // Device execution lives in the query engine: without the store's mirrors it declines, writes nothing and says why.
        using var device = new DeviceAttention();
        var o = new float[q.Length];
        var lse = new float[4];
        Assert.False(device.TryRun(layer, q, 1, 0, 0, o, lse, out AttentionCounters counters, out DeviceOutcome run));
        Assert.Equal(default, counters);
        Assert.Equal(DeviceOutcome.OnCpu("the gpu tier is off"), run);
        Assert.All(o, x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Store_without_gpu_budget_reports_cpu_tier()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 64L << 20, MaintenanceInterval = TimeSpan.Zero });
        Assert.StartsWith("gpu tier off: no GPU budget", store.GpuTierStatus, StringComparison.Ordinal);
        (string ctx, SyntheticWorkload w) = Load(store, 100);
        using var executor = new AttentionExecutor(store);
        AttentionResult r = executor.Attend(new AttentionQuery(ctx, 0, w.Queries(1, 5), 1, 0, 0, PlanRequest.Auto, false));
        Assert.Equal("cpu", r.Stats.Tier);
        Assert.Equal(ExecutionSite.Cpu, r.Stats.Explain.Site);
    }

    [SkippableFact]
    public void Gpu_tier_answers_equal_the_reference_while_blocks_are_promoted_and_demoted()
    {
        Skip.IfNot(CudaRuntime.IsAvailable, $"CUDA unavailable: {CudaRuntime.UnavailableReason}");
        IReadOnlyList<StoreCheck> checks = StoreGpuChecks.Run();
        foreach (StoreCheck c in checks)
        {
            output.WriteLine(c.ToString());
        }

        Assert.All(checks, c => Assert.True(c.Passed, c.ToString()));
    }

    private static (string Ctx, SyntheticWorkload Workload) Load(KvStore store, int tokens)
    {
        store.CreateModel(new ModelSchema("gq", 1, 4, 2, 16, KvDType.F32, 16, 0));
        var w = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = 2, NumQueryHeads = 4, HeadDim = 16, KeyRank = 4, RecentWindow = 8 });
        string ctx = store.CreateContext("gq", "", null, []).Id;
        store.AppendWorkload(ctx, w, KvDType.F32, 0, tokens);
        return (ctx, w);
    }
}

using KvDb.Kernels.Cuda;
using KvDb.TestKit;
using Xunit.Abstractions;

namespace KvDb.Kernels.Tests;

/// <summary>
/// GPU vs CPU parity of the CUDA backend. Without libkvdbcuda.so or a GPU (CI, developer machines) the
/// probe must answer false cleanly and the GPU cases are reported as skipped. On a machine with both
/// they compare the CUDA kernels with the f64 reference and <see cref="ExactAttentionKernel"/>; the
/// same cases run on the device machine through bench/KvDb.GpuRunner (it has no .NET SDK).
/// </summary>
public sealed class CudaParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly CudaAttentionBackend? _backend = CudaAttentionBackend.TryCreate();

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (ParityCase c in CudaParity.Cases())
        {
            data.Add(c.Name);
        }

        return data;
    }

    [Fact]
    public void Probe_answers_without_throwing_and_explains_a_missing_backend()
    {
        bool available = CudaRuntime.IsAvailable;
        output.WriteLine(available ? $"CUDA: {CudaRuntime.DeviceName()} via {CudaRuntime.LibraryPath}" : $"CUDA unavailable: {CudaRuntime.UnavailableReason}");
        if (!available)
        {
            Assert.NotEmpty(CudaRuntime.UnavailableReason);
            Assert.Equal(0, CudaRuntime.DeviceCount);
            Assert.Null(CudaAttentionBackend.TryCreate());
            Assert.Throws<InvalidOperationException>(() => CudaRuntime.Allocate(16));
        }
        else
        {
            Assert.True(CudaRuntime.DeviceCount > 0);
        }
    }

    [Fact]
    public void Parity_cases_cover_the_required_matrix()
    {
        IReadOnlyList<ParityCase> cases = CudaParity.Cases();
        Assert.Equal(3, cases.Select(c => c.DType).Distinct().Count());
        Assert.Contains(cases, c => c.NumQueryHeads == c.NumKvHeads);
        Assert.Contains(cases, c => c.NumQueryHeads == 4 * c.NumKvHeads);
        Assert.Contains(cases, c => c.NumQueryHeads == 8 * c.NumKvHeads);
        Assert.Contains(cases, c => c.HeadDim == 64);
        Assert.Contains(cases, c => c.HeadDim == 128);
        Assert.Contains(cases, c => c.Tokens % c.BlockCapacity != 0);
        Assert.Contains(cases, c => c.ExcludeEnd > c.ExcludeStart);
        Assert.Contains(cases, c => c.Gathered);
        Assert.Contains(cases, c => c.Layout == GpuKvLayout.Blocks);
    }

    [SkippableTheory]
    [MemberData(nameof(CaseNames))]
    public void Gpu_attention_matches_cpu_and_f64_reference(string name)
    {
        Skip.If(_backend is null, $"CUDA unavailable: {CudaRuntime.UnavailableReason}");
        ParityOutcome r = CudaParity.Run(_backend!, CudaParity.Cases().Single(c => c.Name == name));
        output.WriteLine($"relL2 ref {r.RelL2Reference:E2}, lse {r.MaxLseError:E2}, relL2 cpu {r.RelL2Cpu:E2}, host path {r.HostPathMaxDiff}, written {r.AllWritten}");
        Assert.True(r.Passed, r.ToString());
    }

    [SkippableFact]
    public void Gpu_scores_match_f64()
    {
        Skip.If(_backend is null, $"CUDA unavailable: {CudaRuntime.UnavailableReason}");
        foreach (CheckOutcome r in CudaParity.RunScoring(_backend!))
        {
            output.WriteLine($"{r.Name}: max error {r.MaxError:E2}");
            Assert.True(r.Passed, r.ToString());
        }
    }

    [SkippableFact]
    public void Gpu_topk_matches_cpu_sort()
    {
        Skip.If(_backend is null, $"CUDA unavailable: {CudaRuntime.UnavailableReason}");
        foreach (CheckOutcome r in CudaParity.RunTopK(_backend!))
        {
            Assert.True(r.Passed, r.ToString());
        }
    }

    [SkippableFact]
    public void Gpu_batched_attention_matches_f64_and_single_request_calls()
    {
        Skip.If(_backend is null, $"CUDA unavailable: {CudaRuntime.UnavailableReason}");
        foreach (bool prefetch in new[] { true, false })
        {
            CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, prefetch ? 1 : 0);
            try
            {
                IReadOnlyList<CheckOutcome> results = CudaParity.RunBatched(_backend!);
                Assert.True(results.Count >= 10, $"{results.Count} batch members checked");
                foreach (CheckOutcome r in results)
                {
                    output.WriteLine($"{r.Name} (L2 prefetch {prefetch}): {r.Detail}");
                    Assert.True(r.Passed, $"{r.Name}: {r.Detail}");
                }
            }
            finally
            {
                CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 1);
            }
        }
    }

    [Fact]
    public void Batch_rejects_bad_requests_before_any_device_work()
    {
        var g = new AttentionGeometry(32, 8, 128, 64, KvDType.BF16, 1f / MathF.Sqrt(128));
        var kv = GpuKvSource.Contiguous(0x1000, 0x2000, 100);
        var gathered = new GpuSelection(0x3000, 0x4000, 10);
        var good = new GpuAttentionRequest(kv, gathered, 0x5000, 0x6000, 0x7000);

        Assert.Contains("at least one request", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [], 1)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GpuAttentionBatch(g, [good], 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GpuAttentionBatch(g, [good, good], 40000));
        Assert.Contains("request 1: layout Blocks", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good, good with { Kv = GpuKvSource.Blocks(0x8000, 100) }], 1)).Message);
        Assert.Contains("request 1: dense", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good, good with { Selection = default }], 1)).Message);
        Assert.Contains("request 0: a contiguous source", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good with { Kv = GpuKvSource.Contiguous(0x1008, 0x2000, 100) }], 1)).Message);
        Assert.Contains("Capacity 50 is below NumTokens 100", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good with { Kv = GpuKvSource.Contiguous(0x1000, 0x2000, 100, 50) }], 1)).Message);
        Assert.Contains("request 0: a block source", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good with { Kv = GpuKvSource.Blocks(0, 100) }], 1)).Message);
        Assert.Contains("16-byte aligned", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good, good with { Output = 0x6004 }], 1)).Message);
        Assert.Contains("device offsets", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good with { Selection = new GpuSelection(0x3000, 0, 10) }], 1)).Message);
        Assert.Contains("NumTokens -1", Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g, [good with { Kv = GpuKvSource.Contiguous(0x1000, 0x2000, -1) }], 1)).Message);
        Assert.Throws<ArgumentException>(() => new GpuAttentionBatch(g with { HeadDim = 0 }, [good], 1));
        if (!CudaRuntime.IsAvailable)
        {
            // Valid requests get past the checks and only then need the device.
            Assert.Throws<InvalidOperationException>(() => new GpuAttentionBatch(g, [good, good], 1));
        }
    }

    public void Dispose() => _backend?.Dispose();
}

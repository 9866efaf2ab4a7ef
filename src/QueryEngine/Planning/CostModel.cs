using KvDb.Kernels;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// What reading K/V costs on this machine, in bytes per microsecond: streaming (exact attention reads whole blocks in
/// order) and gathered (sparse plans read scattered rows). Calibrated once by <see cref="Calibrate"/> at server start
/// (about 100 ms) and reported in Admin.GetStats; the optimizer compares plans in these units.
/// </summary>
public sealed record CostModel(double StreamBytesPerMicro, double GatherBytesPerMicro, int Parallelism)
{
    /// <summary>Conservative figures for tests and for a machine that was not calibrated: 8 GB/s streaming, 2 GB/s gathered.</summary>
    public static CostModel Default { get; } = new(8_000, 2_000, Math.Max(1, Environment.ProcessorCount));

    /// <summary>Microseconds to read <paramref name="rows"/> K and V rows of <paramref name="rowBytes"/> each in order.</summary>
    public double StreamMicros(long rows, int rowBytes) => rows * 2.0 * rowBytes / StreamBytesPerMicro;

    /// <summary>Microseconds to read <paramref name="rows"/> scattered K and V rows of <paramref name="rowBytes"/> each.</summary>
    public double GatherMicros(long rows, int rowBytes) => rows * 2.0 * rowBytes / GatherBytesPerMicro;

    /// <summary>
    /// Measures one core running the exact kernel over a KV head's rows in order and the gathered kernel over scattered
    /// rows (<see cref="KernelCalibration"/>): the same code the plans run, so the figures include its compute, not only
    /// the memory's.
    /// </summary>
    public static CostModel Calibrate()
    {
        (double stream, double gather) = KernelCalibration.Measure();
        return new CostModel(stream, gather, Math.Max(1, Environment.ProcessorCount));
    }

    /// <summary>Which SIMD path the kernels take here (reported with the figures).</summary>
    public static string SimdPath => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "avx512"
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "avx2" : "scalar";
}

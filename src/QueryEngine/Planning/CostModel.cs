using System.Diagnostics;
using System.Runtime.InteropServices;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// What reading K/V costs on this machine, in bytes per microsecond: streaming (exact attention reads whole blocks in
/// order) and gathered (sparse plans read scattered rows). Calibrated once by <see cref="Calibrate"/> at server start
/// (about 50 ms) and reported in Admin.GetStats; the optimizer compares plans in these units.
/// </summary>
public sealed record CostModel(double StreamBytesPerMicro, double GatherBytesPerMicro, int Parallelism)
{
    private const int CalibrationBytes = 64 << 20;
    private const int RowBytes = 256;

    /// <summary>Conservative figures for tests and for a machine that was not calibrated: 8 GB/s streaming, 2 GB/s gathered.</summary>
    public static CostModel Default { get; } = new(8_000, 2_000, Math.Max(1, Environment.ProcessorCount));

    /// <summary>Microseconds to read <paramref name="rows"/> K and V rows of <paramref name="rowBytes"/> each in order.</summary>
    public double StreamMicros(long rows, int rowBytes) => rows * 2.0 * rowBytes / StreamBytesPerMicro;

    /// <summary>Microseconds to read <paramref name="rows"/> scattered K and V rows of <paramref name="rowBytes"/> each.</summary>
    public double GatherMicros(long rows, int rowBytes) => rows * 2.0 * rowBytes / GatherBytesPerMicro;

    /// <summary>
    /// Measures one core's streaming and gathered read of bf16-row-sized records over a buffer larger than the caches
    /// (the kernels run one KV head per core), best of three passes each.
    /// </summary>
    public static CostModel Calibrate()
    {
        byte[] buffer = GC.AllocateUninitializedArray<byte>(CalibrationBytes);
        new Random(17).NextBytes(buffer.AsSpan(0, 4096));
        for (int i = 4096; i < buffer.Length; i += 4096)
        {
            buffer.AsSpan(0, 4096).CopyTo(buffer.AsSpan(i, 4096));
        }

        ReadOnlySpan<float> floats = MemoryMarshal.Cast<byte, float>(buffer);
        int rows = CalibrationBytes / RowBytes;
        int[] order = new int[rows / 4];
        var random = new Random(23);
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = random.Next(rows);
        }

        double stream = double.MaxValue;
        double gather = double.MaxValue;
        float sink = 0;
        for (int pass = 0; pass < 3; pass++)
        {
            long t0 = Stopwatch.GetTimestamp();
            sink += System.Numerics.Tensors.TensorPrimitives.Sum(floats);
            stream = Math.Min(stream, Stopwatch.GetElapsedTime(t0).TotalMicroseconds);

            t0 = Stopwatch.GetTimestamp();
            int floatsPerRow = RowBytes / sizeof(float);
            foreach (int r in order)
            {
                sink += System.Numerics.Tensors.TensorPrimitives.Sum(floats.Slice(r * floatsPerRow, floatsPerRow));
            }

            gather = Math.Min(gather, Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }

        GC.KeepAlive(sink);
        return new CostModel(CalibrationBytes / Math.Max(1, stream), (double)order.Length * RowBytes / Math.Max(1, gather), Math.Max(1, Environment.ProcessorCount));
    }

    /// <summary>Which SIMD path the kernels take here (reported with the figures).</summary>
    public static string SimdPath => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "avx512"
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "avx2" : "scalar";
}

using System.Diagnostics;

namespace KvDb.Kernels;

/// <summary>
/// Measures what the optimizer compares: one core running exact attention over a KV head's rows in order (streaming)
/// and the gathered kernel over scattered rows of the same layer, both over a bf16 layer larger than the caches and
/// allocated like the CPU tier's (huge-page advised). Figures are bytes of K and V per microsecond, best of a few passes
/// after one warm-up, so the cost of a plan is its rows times these.
/// </summary>
public static unsafe class KernelCalibration
{
    private const int HeadDim = 128;
    private const int GroupSize = 4;
    private const int BlockTokens = 64;
    private const int GatherRows = 4096;
    private const int Passes = 3;

    /// <summary>
    /// Streaming and gathered read rates over a layer of <paramref name="bytes"/> bytes of K and V (64 MiB by default:
    /// about 100 ms at start).
    /// </summary>
    public static (double StreamBytesPerMicro, double GatherBytesPerMicro) Measure(long bytes = 64L << 20)
    {
        var g = new AttentionGeometry(GroupSize, 1, HeadDim, BlockTokens, KvDType.BF16, 1f / MathF.Sqrt(HeadDim));
        int rowBytes = g.RowBytes;
        int blockCount = (int)Math.Max(1, bytes / (2L * BlockTokens * rowBytes));
        long tokens = (long)blockCount * BlockTokens;
        long half = tokens * rowBytes;
        nint keys = HugePageMemory.Allocate(half);
        nint values = HugePageMemory.Allocate(half);
        try
        {
            // Small finite bf16 values (around 1.0) so the softmax does real work, written once so the pages exist.
            var k = new Span<ushort>((void*)keys, (int)(half / 2));
            var v = new Span<ushort>((void*)values, (int)(half / 2));
            for (int i = 0; i < k.Length; i++)
            {
                k[i] = (ushort)(0x3F00 + (i & 0x7F));
                v[i] = (ushort)(0x3F00 + ((i * 7) & 0x7F));
            }

            var blocks = new KvBlockRef[blockCount];
            for (int b = 0; b < blockCount; b++)
            {
                long offset = (long)b * BlockTokens * rowBytes;
                blocks[b] = new KvBlockRef(keys + (nint)offset, values + (nint)offset, BlockTokens, (long)b * BlockTokens);
            }

            var queries = new float[GroupSize * HeadDim];
            var random = new Random(29);
            for (int i = 0; i < queries.Length; i++)
            {
                queries[i] = (float)(random.NextDouble() - 0.5);
            }

            var output = new float[queries.Length];
            var lse = new float[GroupSize];
            double stream = double.MaxValue;
            for (int pass = 0; pass <= Passes; pass++)
            {
                long t0 = Stopwatch.GetTimestamp();
                ExactAttentionKernel.RunHead(g, blocks, 0, 0, 0, queries, 1, output, lse);
                double micros = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                stream = pass == 0 ? stream : Math.Min(stream, micros);
            }

            int rows = (int)Math.Min(GatherRows, tokens / 4);
            var positions = new long[rows];
            double gather = double.MaxValue;
            for (int pass = 0; pass <= Passes; pass++)
            {
                // Fresh rows each pass: the same ones again would come from the cache.
                for (int i = 0; i < rows; i++)
                {
                    positions[i] = random.NextInt64(tokens);
                }

                Array.Sort(positions);
                int distinct = 0;
                for (int i = 0; i < rows; i++)
                {
                    if (distinct == 0 || positions[distinct - 1] != positions[i])
                    {
                        positions[distinct++] = positions[i];
                    }
                }

                long t0 = Stopwatch.GetTimestamp();
                GatheredAttentionKernel.Run(g, blocks, 0, positions.AsSpan(0, distinct), queries, 1, ReadOnlySpan<float>.Empty, output, lse);
                double micros = Stopwatch.GetElapsedTime(t0).TotalMicroseconds * rows / Math.Max(1, distinct);
                gather = pass == 0 ? gather : Math.Min(gather, micros);
            }

            return (2.0 * half / Math.Max(1, stream), 2.0 * rows * rowBytes / Math.Max(1, gather));
        }
        finally
        {
            HugePageMemory.Free(keys);
            HugePageMemory.Free(values);
        }
    }
}

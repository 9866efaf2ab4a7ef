using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using KvDb.Kernels;

namespace KvDb.Bench;

/// <summary>
/// The memory-bandwidth ceiling for an exact attention pass: one read of every K and V region of the same
/// blocks, summed as ulongs so the loads cannot be optimized away, split over threads like the kernel splits
/// its work. An attention kernel can at best match it, so achieved / streaming says how far from the
/// roofline the kernel is.
/// </summary>
internal static unsafe class StreamingRead
{
    /// <summary>Reads the first <paramref name="regionBytes"/> of every block's key and value region once; returns a checksum.</summary>
    public static ulong Run(KvBlockRef[] blocks, long regionBytes, int threads)
    {
        if (threads <= 1)
        {
            return SumBlocks(blocks, 0, blocks.Length, regionBytes);
        }

        var partial = new ulong[threads];
        Parallel.For(
            0,
            threads,
            new ParallelOptions { MaxDegreeOfParallelism = threads },
            t =>
            {
                int first = (int)((long)blocks.Length * t / threads);
                int end = (int)((long)blocks.Length * (t + 1) / threads);
                partial[t] = SumBlocks(blocks, first, end, regionBytes);
            });

        ulong sum = 0;
        foreach (ulong p in partial)
        {
            sum += p;
        }

        return sum;
    }

    private static ulong SumBlocks(KvBlockRef[] blocks, int first, int end, long regionBytes)
    {
        ulong sum = 0;
        for (int b = first; b < end; b++)
        {
            sum += Sum((ulong*)blocks[b].Keys, regionBytes / sizeof(ulong));
            sum += Sum((ulong*)blocks[b].Values, regionBytes / sizeof(ulong));
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong Sum(ulong* p, long count)
    {
        // Four independent accumulators keep enough loads in flight to saturate a core's share of bandwidth.
        Vector512<ulong> a0 = Vector512<ulong>.Zero;
        Vector512<ulong> a1 = Vector512<ulong>.Zero;
        Vector512<ulong> a2 = Vector512<ulong>.Zero;
        Vector512<ulong> a3 = Vector512<ulong>.Zero;
        int w = Vector512<ulong>.Count;
        long i = 0;
        for (; i <= count - (4 * w); i += 4 * w)
        {
            a0 += Vector512.Load(p + i);
            a1 += Vector512.Load(p + i + w);
            a2 += Vector512.Load(p + i + (2 * w));
            a3 += Vector512.Load(p + i + (3 * w));
        }

        ulong sum = Vector512.Sum(a0 + a1 + a2 + a3);
        for (; i < count; i++)
        {
            sum += p[i];
        }

        return sum;
    }
}

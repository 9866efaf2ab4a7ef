using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace KvDb.Kernels;

/// <summary>
/// Software prefetch for gathered rows. A scattered row is a cache and TLB miss that the hardware prefetchers cannot
/// predict; asking for rows a few ahead of the one being converted keeps several misses in flight instead of one, which
/// is most of the difference between a gather's speed and the memory's latency.
/// </summary>
public static unsafe class RowPrefetch
{
    /// <summary>Rows requested ahead of the one being read: enough to cover a miss, few enough to fit the fill buffers.</summary>
    public const int Distance = 8;

    /// <summary>Asks for the cache lines of <paramref name="bytes"/> bytes at <paramref name="row"/>; a no-op where x86 prefetch is unavailable.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Row(byte* row, int bytes)
    {
        if (Sse.IsSupported)
        {
            for (int line = 0; line < bytes; line += 64)
            {
                Sse.Prefetch0(row + line);
            }
        }
    }
}

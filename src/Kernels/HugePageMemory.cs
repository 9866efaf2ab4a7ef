using System.Runtime.InteropServices;

namespace KvDb.Kernels;

/// <summary>
/// Native memory for K/V rows, on 2 MiB boundaries and offered to the kernel for transparent huge pages. Sparse plans
/// read scattered rows, and with 4 KiB pages each such row is a TLB miss on top of its cache miss (about 1.5× the
/// gather time on the machines measured). Where huge pages are off or the call is unknown the memory simply stays on
/// small pages. Free with <see cref="Free"/>.
/// </summary>
public static unsafe partial class HugePageMemory
{
    /// <summary>The huge page size this asks for (x86-64 and arm64 Linux default).</summary>
    public const long HugePage = 2L << 20;

    private const int MadvHugePage = 14;

    /// <summary>Allocates <paramref name="bytes"/> bytes (64-byte aligned; 2 MiB aligned and huge-page advised when at least that large).</summary>
    public static nint Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (!OperatingSystem.IsLinux() || bytes < HugePage)
        {
            return (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        }

        nint memory = (nint)NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePage);
        try
        {
            _ = madvise(memory, (nuint)(bytes & ~(HugePage - 1)), MadvHugePage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }

        return memory;
    }

    /// <summary>Frees memory from <see cref="Allocate"/>.</summary>
    public static void Free(nint memory) => NativeMemory.AlignedFree((void*)memory);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(nint address, nuint length, int advice);
}

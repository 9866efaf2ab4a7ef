using System.Runtime.InteropServices;

namespace KvDb.Kernels.Cuda;

/// <summary>
/// Entry to the optional CUDA backend. <see cref="IsAvailable"/> loads libkvdbcuda.so and asks it
/// for devices once; it is false, without throwing, when the library, the driver or a GPU is missing,
/// or when KVDB_CUDA=off. Everything else here throws <see cref="InvalidOperationException"/> when
/// the backend is unavailable and <see cref="CudaException"/> when a call fails.
/// </summary>
public static unsafe class CudaRuntime
{
    private static readonly Lazy<ProbeResult> Probe = new(RunProbe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>True when the library loaded and at least one CUDA device is usable.</summary>
    public static bool IsAvailable => Probe.Value.Native is not null && Probe.Value.DeviceCount > 0;

    /// <summary>Why the backend is off ("" when it is available).</summary>
    public static string UnavailableReason => IsAvailable ? "" : Probe.Value.Reason;

    /// <summary>CUDA devices visible to the process (0 when unavailable).</summary>
    public static int DeviceCount => Probe.Value.Native is null ? 0 : Probe.Value.DeviceCount;

    /// <summary>Where libkvdbcuda.so was loaded from ("" when it was not).</summary>
    public static string LibraryPath => Probe.Value.Native?.LibraryPath ?? "";

    internal static CudaNative Native =>
        IsAvailable ? Probe.Value.Native! : throw new InvalidOperationException($"CUDA backend unavailable: {Probe.Value.Reason}");

    /// <summary>Name, compute capability, multiprocessors and memory of a device.</summary>
    public static string DeviceName(int device = 0)
    {
        byte* buffer = stackalloc byte[256];
        Check(Native.DeviceName(device, buffer, 256), "kvdb_cuda_device_name");
        return Marshal.PtrToStringUTF8((nint)buffer) ?? "";
    }

    /// <summary>Free and total bytes of device memory.</summary>
    public static (long Free, long Total) MemoryInfo(int device = 0)
    {
        ulong free, total;
        Check(Native.DeviceMemory(device, &free, &total), "kvdb_cuda_device_memory");
        return ((long)free, (long)total);
    }

    /// <summary>cudaMalloc: device memory the caller must give back with <see cref="Free"/>.</summary>
    public static nint Allocate(long bytes, int device = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        nint p;
        Check(Native.Malloc(device, &p, (ulong)bytes), $"cudaMalloc of {bytes} bytes");
        return p;
    }

    /// <summary>cudaFree (null is ignored).</summary>
    public static void Free(nint devicePointer)
    {
        if (devicePointer != 0)
        {
            Check(Native.Free(devicePointer), "cudaFree");
        }
    }

    /// <summary>Synchronous copy of host memory to the device.</summary>
    public static void CopyToDevice<T>(nint destination, ReadOnlySpan<T> source)
        where T : unmanaged
    {
        fixed (T* p = source)
        {
            CopyToDevice(destination, (nint)p, (long)source.Length * sizeof(T));
        }
    }

    /// <summary>Synchronous copy of bytes at a host address to the device.</summary>
    public static void CopyToDevice(nint destination, nint hostSource, long bytes)
    {
        if (bytes > 0)
        {
            Check(Native.Memcpy(destination, hostSource, (ulong)bytes, CudaNative.CopyHostToDevice), "copy to device");
        }
    }

    /// <summary>Synchronous copy of device memory into a host span (waits for queued kernels).</summary>
    public static void CopyToHost<T>(Span<T> destination, nint source)
        where T : unmanaged
    {
        fixed (T* p = destination)
        {
            CopyToHost((nint)p, source, (long)destination.Length * sizeof(T));
        }
    }

    /// <summary>Synchronous copy of device bytes to a host address.</summary>
    public static void CopyToHost(nint hostDestination, nint source, long bytes)
    {
        if (bytes > 0)
        {
            Check(Native.Memcpy(hostDestination, source, (ulong)bytes, CudaNative.CopyDeviceToHost), "copy to host");
        }
    }

    /// <summary>Synchronous device-to-device copy.</summary>
    public static void CopyDeviceToDevice(nint destination, nint source, long bytes)
    {
        if (bytes > 0)
        {
            Check(Native.Memcpy(destination, source, (ulong)bytes, CudaNative.CopyDeviceToDevice), "device-to-device copy");
        }
    }

    /// <summary>Sets every byte of a device range (0xFF poisons f32 data with NaN).</summary>
    public static void Memset(nint devicePointer, byte value, long bytes)
    {
        if (bytes > 0)
        {
            Check(Native.Memset(devicePointer, value, (ulong)bytes), "cudaMemset");
        }
    }

    /// <summary>Sets a process-wide kernel choice (benchmarks and A/B tests; kvdb_set_option).</summary>
    public static void SetOption(CudaKernelOption option, int value) => Check(Native.SetOption((int)option, value), $"kvdb_set_option({option}, {value})");

    /// <summary>Waits for all work on the device.</summary>
    public static void Synchronize() => Check(Native.Synchronize(), "cudaDeviceSynchronize");

    /// <summary>Throws <see cref="CudaException"/> for a non-zero status.</summary>
    public static void Check(int status, string what)
    {
        if (status != 0)
        {
            throw new CudaException(status, $"{what} failed: {Native.Message(status)} (status {status})");
        }
    }

    private static ProbeResult RunProbe()
    {
        if (string.Equals(Environment.GetEnvironmentVariable("KVDB_CUDA"), "off", StringComparison.OrdinalIgnoreCase))
        {
            return new ProbeResult(null, 0, "disabled by KVDB_CUDA=off");
        }

        try
        {
            CudaNative? native = CudaNative.TryLoad(out string reason);
            if (native is null)
            {
                return new ProbeResult(null, 0, reason);
            }

            int count;
            int status = native.DeviceCount(&count);
            if (status != 0)
            {
                return new ProbeResult(native, 0, $"no usable CUDA driver: {native.Message(status)}");
            }

            return count > 0 ? new ProbeResult(native, count, "") : new ProbeResult(native, 0, "no CUDA device");
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
        {
            return new ProbeResult(null, 0, e.Message);
        }
    }

    private sealed record ProbeResult(CudaNative? Native, int DeviceCount, string Reason);
}

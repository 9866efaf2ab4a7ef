namespace KvDb.Kernels.Cuda;

/// <summary>
/// One cudaMalloc allocation with an owner: the memory lives until <see cref="Dispose"/>. There is no
/// finalizer (freeing device memory from the finalizer thread during shutdown is unsafe), so owners
/// must dispose.
/// </summary>
public sealed class DeviceBuffer : IDisposable
{
    private nint _pointer;

    /// <summary>Allocates <paramref name="bytes"/> of device memory (contents undefined).</summary>
    public DeviceBuffer(long bytes, int device = 0)
    {
        Bytes = bytes;
        _pointer = CudaRuntime.Allocate(bytes, device);
    }

    /// <summary>Device address of the first byte.</summary>
    public nint Pointer => _pointer != 0 ? _pointer : throw new ObjectDisposedException(nameof(DeviceBuffer));

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>Copies host data to the start of the buffer.</summary>
    public void Upload<T>(ReadOnlySpan<T> source)
        where T : unmanaged
    {
        CheckFits<T>(source.Length);
        CudaRuntime.CopyToDevice(Pointer, source);
    }

    /// <summary>Copies the start of the buffer into host memory.</summary>
    public void Download<T>(Span<T> destination)
        where T : unmanaged
    {
        CheckFits<T>(destination.Length);
        CudaRuntime.CopyToHost(destination, Pointer);
    }

    /// <summary>Frees the memory.</summary>
    public void Dispose()
    {
        nint p = Interlocked.Exchange(ref _pointer, 0);
        if (p != 0)
        {
            CudaRuntime.Free(p);
        }
    }

    private unsafe void CheckFits<T>(int count)
        where T : unmanaged
    {
        if ((long)count * sizeof(T) > Bytes)
        {
            throw new ArgumentException($"{count} elements of {sizeof(T)} bytes exceed the buffer's {Bytes} bytes");
        }
    }
}

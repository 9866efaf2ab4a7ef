namespace KvDb.Kernels.Cuda;

/// <summary>A CUDA event for timing work on a <see cref="CudaAttentionBackend"/>'s stream.</summary>
public sealed unsafe class GpuEvent : IDisposable
{
    private nint _handle;

    /// <summary>Creates a timing event.</summary>
    public GpuEvent()
    {
        nint h;
        CudaRuntime.Check(CudaRuntime.Native.EventCreate(&h), "cudaEventCreate");
        _handle = h;
    }

    internal nint Handle => _handle != 0 ? _handle : throw new ObjectDisposedException(nameof(GpuEvent));

    /// <summary>Milliseconds of device time between two recorded events (waits for <paramref name="stop"/>).</summary>
    public static float ElapsedMilliseconds(GpuEvent start, GpuEvent stop)
    {
        float ms;
        CudaRuntime.Check(CudaRuntime.Native.EventElapsedMs(start.Handle, stop.Handle, &ms), "cudaEventElapsedTime");
        return ms;
    }

    /// <summary>Destroys the event.</summary>
    public void Dispose()
    {
        nint h = Interlocked.Exchange(ref _handle, 0);
        if (h != 0)
        {
            CudaRuntime.Check(CudaRuntime.Native.EventDestroy(h), "cudaEventDestroy");
        }
    }
}

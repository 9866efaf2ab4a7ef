using KvDb.Kernels;
using KvDb.Kernels.Cuda;

namespace KvDb.Store;

/// <summary>
/// A layer snapshot's blocks as mirrors in the GPU tier, held for the snapshot's lifetime: the mirrors are
/// pinned there (no eviction or reuse of their slots) and a device block table lists them in position order,
/// so a device kernel reads the layer where it lies, with no K/V copied per query. A memory handle only: the
/// store owns the device memory, the query engine runs attention over <see cref="Source"/>.
/// Disposed by the owning <see cref="LayerSnapshot"/>.
/// </summary>
public sealed class DeviceLayer : IDisposable
{
    private readonly Action _release;
    private int _disposed;

    internal DeviceLayer(AttentionGeometry geometry, GpuKvSource source, int device, int blocks, int promoted, Action release)
    {
        Geometry = geometry;
        Source = source;
        Device = device;
        Blocks = blocks;
        Promoted = promoted;
        _release = release;
    }

    /// <summary>The layer's attention geometry.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>The block-paged device source (block table and token count).</summary>
    public GpuKvSource Source { get; }

    /// <summary>The CUDA device ordinal the mirrors live on.</summary>
    public int Device { get; }

    /// <summary>Blocks in the table.</summary>
    public int Blocks { get; }

    /// <summary>Blocks this snapshot had to copy to the device (the rest were already mirrored).</summary>
    public int Promoted { get; }

    /// <summary>True once the mirrors were unpinned (the snapshot was disposed); <see cref="Source"/> must not be read then.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Unpins the mirrors and returns the block table.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _release();
        }
    }
}

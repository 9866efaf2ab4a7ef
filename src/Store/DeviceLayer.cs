using KvDb.Kernels;
using KvDb.Kernels.Cuda;

namespace KvDb.Store;

/// <summary>
/// A layer snapshot's blocks as mirrors in the GPU tier, held for the snapshot's lifetime: the mirrors are
/// pinned there (no eviction or reuse of their slots) and a device block table lists them in position order,
/// so <see cref="CudaAttentionBackend"/> reads the layer where it lies, with no K/V copied per query.
/// Disposed by the owning <see cref="LayerSnapshot"/>.
/// </summary>
public sealed class DeviceLayer : IDisposable
{
    private readonly Action _release;
    private int _disposed;
    private int _runs;

    internal DeviceLayer(AttentionGeometry geometry, GpuKvSource source, CudaAttentionBackend backend, int blocks, int promoted, Action release)
    {
        Geometry = geometry;
        Source = source;
        Backend = backend;
        Blocks = blocks;
        Promoted = promoted;
        _release = release;
    }

    /// <summary>The layer's attention geometry.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>The block-paged device source (block table and token count).</summary>
    public GpuKvSource Source { get; }

    /// <summary>The backend of the tier's device.</summary>
    public CudaAttentionBackend Backend { get; }

    /// <summary>Blocks in the table.</summary>
    public int Blocks { get; }

    /// <summary>Blocks this snapshot had to copy to the device (the rest were already mirrored).</summary>
    public int Promoted { get; }

    /// <summary>Kernel runs on this layer so far (a plan that used the device says so here).</summary>
    public int Runs => Volatile.Read(ref _runs);

    /// <summary>
    /// Exact attention of host queries over every mirrored token outside [excludeStart, excludeEnd), same
    /// shapes and semantics as <see cref="ExactAttentionKernel.Run"/>; returns the same counters.
    /// </summary>
    public AttentionCounters Attention(ReadOnlySpan<float> queries, int numQueries, long excludeStart, long excludeEnd, Span<float> output, Span<float> lse)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Backend.Attention(Geometry, Source, queries, numQueries, excludeStart, excludeEnd, output, lse);
        Interlocked.Increment(ref _runs);
        long tokens = Source.NumTokens;
        long excluded = excludeEnd > excludeStart ? Math.Max(0, Math.Min(excludeEnd, tokens) - Math.Max(excludeStart, 0)) : 0;
        long rowsPerHead = tokens - excluded;
        long pairs = rowsPerHead * Geometry.NumKvHeads * numQueries;
        long bytes = rowsPerHead * Geometry.NumKvHeads * 2L * Geometry.RowBytes;
        return new AttentionCounters(pairs, pairs, bytes);
    }

    /// <summary>Unpins the mirrors and returns the block table.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _release();
        }
    }
}

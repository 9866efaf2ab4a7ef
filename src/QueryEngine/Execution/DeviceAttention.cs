using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.QueryEngine.Explain;
using KvDb.Store;

namespace KvDb.QueryEngine.Execution;

/// <summary>
/// Runs exact attention on the GPU over a layer's mirrors in the store's GPU tier. The store owns the device
/// memory (<see cref="DeviceLayer"/>: block table, slots); this object owns the kernels' side: one
/// <see cref="CudaAttentionBackend"/> per device ordinal, made on first use and kept until Dispose. A backend
/// serializes its calls on one stream, as the store's single backend per device did before. Thread-safe.
/// </summary>
public sealed class DeviceAttention : IDisposable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<int, CudaAttentionBackend> _backends = [];

    private bool _disposed;

    /// <summary>
    /// Exact attention of host queries over every token of <paramref name="layer"/> outside [excludeStart,
    /// excludeEnd), on the device that mirrors it: same shapes, semantics and counters as
    /// <see cref="ExactAttentionKernel.Run"/>. False, with nothing written, when the layer is not on the device
    /// (no GPU tier, the layer does not fit) or a CUDA call fails: the CPU copy is authoritative, answer from it.
    /// </summary>
    public bool TryRun(
        LayerSnapshot layer,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse,
        out AttentionCounters counters,
        out DeviceOutcome run)
    {
        ArgumentNullException.ThrowIfNull(layer);
        counters = default;
        if (layer.TryOpenDevice() is not DeviceLayer device)
        {
            run = DeviceOutcome.OnCpu(layer.DeviceReason);
            return false;
        }

        try
        {
            ObjectDisposedException.ThrowIf(device.IsDisposed, device);
            GetBackend(device.Device).Attention(device.Geometry, device.Source, queries, numQueries, excludeStart, excludeEnd, output, lse);
        }
        catch (CudaException)
        {
            // The layer was mirrored, so the snapshot reports no reason; the explain says "on cpu" alone, as before.
            run = DeviceOutcome.OnCpu(layer.DeviceReason);
            return false;
        }

        long tokens = device.Source.NumTokens;
        long excluded = new ExcludeRange(excludeStart, excludeEnd).CountWithin(tokens);
        long rowsPerHead = tokens - excluded;
        long pairs = rowsPerHead * device.Geometry.NumKvHeads * numQueries;
        long bytes = rowsPerHead * device.Geometry.NumKvHeads * 2L * device.Geometry.RowBytes;
        counters = new AttentionCounters(pairs, pairs, bytes);
        run = new DeviceOutcome(ExecutionSite.Gpu, device.Promoted, device.Blocks, string.Empty);
        return true;
    }

    /// <summary>The backend this object runs on CUDA device <paramref name="device"/>, made on first use (benchmarks compare against it).</summary>
    public CudaAttentionBackend GetBackend(int device)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_backends.TryGetValue(device, out CudaAttentionBackend? backend))
            {
                backend = new CudaAttentionBackend(device);
                _backends.Add(device, backend);
            }

            return backend;
        }
    }

    /// <summary>Frees every backend's context (the store's device memory is not affected).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (CudaAttentionBackend backend in _backends.Values)
            {
                backend.Dispose();
            }

            _backends.Clear();
        }
    }
}

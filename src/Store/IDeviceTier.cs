using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// The accelerator tier above the CPU (<see cref="CudaDeviceTier"/> fills it in): it mirrors blocks of layers
/// that are queried into device memory so device kernels can read them. The CPU copy stays authoritative;
/// the device tier may drop a mirror at any time it is not in use (no <see cref="DeviceLayer"/> holds it).
/// </summary>
public interface IDeviceTier : IKvTier
{
    /// <summary>Bytes of device memory the tier may use.</summary>
    long BudgetBytes { get; }

    /// <summary>Mirrors a resident, pinned, full block; returns the device pointer, or 0 when the device budget is full.</summary>
    nint TryMirror(KvBlock block);

    /// <summary>Drops the mirror of a block (it was freed or demoted).</summary>
    void Drop(KvBlock block);

    /// <summary>
    /// Mirrors every block of a pinned layer snapshot (<paramref name="views"/>[i] names the rows of
    /// <paramref name="blocks"/>[i] the snapshot holds; a partial tail block is mirrored up to them) and keeps
    /// the mirrors until the returned layer is disposed. Null, with the reason, when they do not all fit.
    /// </summary>
    DeviceLayer? TryMirrorLayer(ModelSchema model, IReadOnlyList<KvBlock> blocks, ReadOnlySpan<KvBlockRef> views, long tokens, out string reason);
}

namespace KvDb.Store;

/// <summary>
/// The seam for an accelerator tier above the CPU (a CUDA issue fills it in): it mirrors hot, pinned full blocks
/// into device memory so device kernels can read them. The CPU copy stays authoritative; the device tier may
/// drop a mirror at any time it is not in use.
/// </summary>
public interface IDeviceTier : IKvTier
{
    /// <summary>Mirrors a resident, pinned, full block; returns the device pointer, or 0 when the device budget is full.</summary>
    nint TryMirror(KvBlock block);

    /// <summary>Drops the mirror of a block (it was freed or demoted).</summary>
    void Drop(KvBlock block);
}

namespace KvDb.Kernels.Cuda;

/// <summary>How a layer's keys and values are laid out in device memory.</summary>
public enum GpuKvLayout
{
    /// <summary>Keys and values each [kvHead][capacity][headDim]: one tensor per layer.</summary>
    Contiguous = 0,

    /// <summary>
    /// A device array of block base addresses; block b holds positions [b·cap, (b+1)·cap) as a key region
    /// [kvHead][cap][headDim] followed by a value region of the same size (a <see cref="GpuSlabAllocator"/> slot).
    /// </summary>
    Blocks = 1,
}

/// <summary>A layer's keys and values on the device and how many leading positions are valid.</summary>
public readonly record struct GpuKvSource(GpuKvLayout Layout, nint Keys, nint Values, long Capacity, nint BlockTable, long NumTokens)
{
    /// <summary>Per-layer tensors; <paramref name="capacity"/> is the row count between KV heads (0 = <paramref name="numTokens"/>).</summary>
    public static GpuKvSource Contiguous(nint keys, nint values, long numTokens, long capacity = 0) =>
        new(GpuKvLayout.Contiguous, keys, values, capacity, 0, numTokens);

    /// <summary>Block-paged: <paramref name="blockTable"/> is a device array of ceil(numTokens / cap) block addresses.</summary>
    public static GpuKvSource Blocks(nint blockTable, long numTokens) => new(GpuKvLayout.Blocks, 0, 0, 0, blockTable, numTokens);
}

/// <summary>
/// A gathered selection on the device: int32 positions grouped by KV head (CSR), head h attends
/// Positions[Offsets[h] .. Offsets[h + 1]). <see cref="MaxPerHead"/> is the longest list. The default
/// value selects every position (dense attention).
/// </summary>
public readonly record struct GpuSelection(nint Positions, nint Offsets, int MaxPerHead)
{
    /// <summary>True when this is the dense (all positions) selection.</summary>
    public bool IsDense => Positions == 0;
}

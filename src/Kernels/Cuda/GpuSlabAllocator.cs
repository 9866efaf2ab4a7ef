namespace KvDb.Kernels.Cuda;

/// <summary>
/// Device memory for the GPU tier: fixed-size slots carved out of large cudaMalloc slabs, so a block
/// moves in and out of the GPU without a cudaMalloc/cudaFree (each of which synchronizes the device).
/// A slot holds one block in the layout the attention kernels read (<see cref="GpuKvLayout.Blocks"/>):
/// the key region, then the value region. Thread-safe.
/// </summary>
public sealed class GpuSlabAllocator : IDisposable
{
    private const long Alignment = 256;
    private readonly object _gate = new();
    private readonly List<DeviceBuffer> _slabs = [];
    private readonly Stack<nint> _free = new();
    private readonly HashSet<nint> _inUse = [];
    private readonly int _device;
    private bool _disposed;

    /// <summary>Slots of <paramref name="slotBytes"/> (rounded up to 256), at most <paramref name="budgetBytes"/> reserved in total.</summary>
    public GpuSlabAllocator(long slotBytes, long budgetBytes, int slotsPerSlab = 64, int device = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slotBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slotsPerSlab);
        SlotBytes = (slotBytes + Alignment - 1) / Alignment * Alignment;
        BudgetBytes = budgetBytes;
        SlotsPerSlab = slotsPerSlab;
        _device = device;
    }

    /// <summary>An allocator whose slots each hold one block of <paramref name="geometry"/> (keys then values).</summary>
    public static GpuSlabAllocator ForBlocks(in AttentionGeometry geometry, long budgetBytes, int slotsPerSlab = 64, int device = 0)
    {
        geometry.Validate();
        return new GpuSlabAllocator(2 * geometry.RegionBytes, budgetBytes, slotsPerSlab, device);
    }

    /// <summary>Bytes of one slot.</summary>
    public long SlotBytes { get; }

    /// <summary>Most bytes the allocator may reserve from the device.</summary>
    public long BudgetBytes { get; }

    /// <summary>Slots per cudaMalloc.</summary>
    public int SlotsPerSlab { get; }

    /// <summary>Bytes reserved from the device (whole slabs).</summary>
    public long ReservedBytes
    {
        get
        {
            lock (_gate)
            {
                return (long)_slabs.Count * SlotsPerSlab * SlotBytes;
            }
        }
    }

    /// <summary>Slots handed out and not freed.</summary>
    public int SlotsInUse
    {
        get
        {
            lock (_gate)
            {
                return _inUse.Count;
            }
        }
    }

    /// <summary>Bytes of the slots in use.</summary>
    public long UsedBytes => SlotsInUse * SlotBytes;

    /// <summary>A free slot's device address, or false when the budget is spent.</summary>
    public bool TryAllocate(out nint slot)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.Count == 0)
            {
                long slabBytes = SlotsPerSlab * SlotBytes;
                if ((long)(_slabs.Count + 1) * slabBytes > BudgetBytes)
                {
                    slot = 0;
                    return false;
                }

                var slab = new DeviceBuffer(slabBytes, _device);
                _slabs.Add(slab);
                for (int i = SlotsPerSlab - 1; i >= 0; i--)
                {
                    _free.Push(slab.Pointer + (nint)(i * SlotBytes));
                }
            }

            slot = _free.Pop();
            _inUse.Add(slot);
            return true;
        }
    }

    /// <summary>Returns a slot; freeing one that is not in use throws.</summary>
    public void Free(nint slot)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_inUse.Remove(slot))
            {
                throw new ArgumentException($"0x{slot:x} is not a slot in use of this allocator", nameof(slot));
            }

            _free.Push(slot);
        }
    }

    /// <summary>Copies a host block (both regions, all <c>BlockCapacity</c> rows) into a slot.</summary>
    public void Upload(nint slot, in KvBlockRef block, in AttentionGeometry geometry)
    {
        CheckSlot(slot, geometry);
        CudaRuntime.CopyToDevice(slot, block.Keys, geometry.RegionBytes);
        CudaRuntime.CopyToDevice(slot + (nint)geometry.RegionBytes, block.Values, geometry.RegionBytes);
    }

    /// <summary>Copies a slot's key and value regions back to host memory (each RegionBytes long).</summary>
    public void Download(nint slot, nint keysDestination, nint valuesDestination, in AttentionGeometry geometry)
    {
        CheckSlot(slot, geometry);
        CudaRuntime.CopyToHost(keysDestination, slot, geometry.RegionBytes);
        CudaRuntime.CopyToHost(valuesDestination, slot + (nint)geometry.RegionBytes, geometry.RegionBytes);
    }

    /// <summary>Frees every slab; slots handed out become invalid.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (DeviceBuffer slab in _slabs)
            {
                slab.Dispose();
            }

            _slabs.Clear();
            _free.Clear();
            _inUse.Clear();
        }
    }

    private void CheckSlot(nint slot, in AttentionGeometry geometry)
    {
        if (2 * geometry.RegionBytes > SlotBytes)
        {
            throw new ArgumentException($"a block of {2 * geometry.RegionBytes} bytes does not fit a {SlotBytes}-byte slot");
        }

        lock (_gate)
        {
            if (!_inUse.Contains(slot))
            {
                throw new ArgumentException($"0x{slot:x} is not a slot in use of this allocator", nameof(slot));
            }
        }
    }
}

using KvDb.Kernels;
using KvDb.Kernels.Cuda;

namespace KvDb.Store;

/// <summary>
/// The GPU tier: mirrors of blocks in slots of <see cref="GpuSlabAllocator"/> slabs (cudaMalloc'd once, one
/// allocator per slot size), at most <see cref="BudgetBytes"/> of slabs in all. Blocks of a queried layer are
/// copied in on first use (a partial tail block only up to the rows its snapshot holds, topped up later) and
/// stay until the budget needs their slot: then the least recently used mirror that no
/// <see cref="DeviceLayer"/> holds is evicted. A block that is freed or demoted from the CPU tier drops its
/// mirror. Mirrors are copies; the CPU block stays authoritative. Slabs are not returned to the device until
/// the tier is disposed, so with several models (slot sizes) one model's slabs are not reused by another.
/// Thread-safe: one lock guards the mirrors; copies to the device happen under it.
/// </summary>
public sealed class CudaDeviceTier : IDeviceTier, IDisposable
{
    private const int MaxSlotsPerSlab = 64;
    private const int MaxPooledTables = 16;

    private readonly Lock _gate = new();
    private readonly Dictionary<long, Pool> _pools = [];
    private readonly Dictionary<KvBlock, Mirror> _mirrors = [];
    private readonly LinkedList<KvBlock> _lru = new(); // first = least recently used
    private readonly List<DeviceBuffer> _tables = [];
    private long _reserved;
    private long _mirroredBytes;
    private long _hits;
    private long _misses;
    private long _evictions;
    private long _drops;
    private long _uploadedBytes;
    private bool _disposed;

    /// <summary>A tier of at most <paramref name="budgetBytes"/> of device memory on CUDA device <paramref name="device"/>.</summary>
    public CudaDeviceTier(long budgetBytes, int device = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(budgetBytes);
        BudgetBytes = budgetBytes;
        Device = device;
        Backend = new CudaAttentionBackend(device);
    }

    /// <inheritdoc />
    public string Name => "gpu";

    /// <summary>Most device bytes the tier's slabs may take.</summary>
    public long BudgetBytes { get; }

    /// <summary>The CUDA device.</summary>
    public int Device { get; }

    /// <summary>The attention backend on <see cref="Device"/> that reads the mirrors.</summary>
    public CudaAttentionBackend Backend { get; }

    /// <summary>Device bytes reserved by slabs so far.</summary>
    public long ReservedBytes
    {
        get
        {
            lock (_gate)
            {
                return _reserved;
            }
        }
    }

    /// <summary>Blocks that have a mirror.</summary>
    public int MirroredBlocks
    {
        get
        {
            lock (_gate)
            {
                return _mirrors.Count;
            }
        }
    }

    /// <summary>Mirrors evicted to make room, since start.</summary>
    public long Evictions
    {
        get
        {
            lock (_gate)
            {
                return _evictions;
            }
        }
    }

    /// <summary>Mirrors dropped because their block was freed or demoted from the CPU tier, since start.</summary>
    public long Drops
    {
        get
        {
            lock (_gate)
            {
                return _drops;
            }
        }
    }

    /// <summary>Bytes copied host → device into mirrors, since start.</summary>
    public long UploadedBytes
    {
        get
        {
            lock (_gate)
            {
                return _uploadedBytes;
            }
        }
    }

    /// <summary>True when <paramref name="block"/> has a mirror.</summary>
    public bool IsMirrored(KvBlock block)
    {
        lock (_gate)
        {
            return _mirrors.ContainsKey(block);
        }
    }

    /// <inheritdoc />
    public TierStats GetStats()
    {
        lock (_gate)
        {
            return new TierStats(Name, _mirroredBytes, _mirrors.Count, _hits, _misses);
        }
    }

    /// <inheritdoc />
    public nint TryMirror(KvBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        if (!block.IsResident || !block.IsFull)
        {
            return 0;
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            try
            {
                return Acquire(block, block.Capacity, pin: false);
            }
            catch (CudaException)
            {
                return 0;
            }
        }
    }

    /// <inheritdoc />
    public void Drop(KvBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        lock (_gate)
        {
            if (_disposed || !_mirrors.TryGetValue(block, out Mirror? m))
            {
                return;
            }

            _drops++;
            if (m.Pins > 0)
            {
                // A reader still runs on it (cannot happen for a freed block: readers hold a reference); free it when the last one leaves.
                m.Dropped = true;
                return;
            }

            Remove(block, m);
        }
    }

    /// <inheritdoc />
    public DeviceLayer? TryMirrorLayer(ModelSchema model, IReadOnlyList<KvBlock> blocks, ReadOnlySpan<KvBlockRef> views, long tokens, out string reason)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(blocks);
        if (blocks.Count == 0 || tokens == 0)
        {
            reason = "the layer is empty";
            return null;
        }

        if (views.Length != blocks.Count)
        {
            throw new ArgumentException("views and blocks must have the same length");
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Pool pool = PoolFor(model);
            long capacity = pool.ReservedSlots + ((BudgetBytes - _reserved) / pool.SlabBytes * pool.SlotsPerSlab);
            if (blocks.Count > capacity)
            {
                reason = $"the layer's {blocks.Count} blocks need {blocks.Count * pool.Allocator.SlotBytes} bytes of device memory, more than the gpu tier's budget of {BudgetBytes} bytes holds";
                return null;
            }

            var slots = new ulong[blocks.Count];
            var pinned = new List<KvBlock>(blocks.Count);
            int promoted = 0;
            try
            {
                // Blocks already mirrored first, so making room for the others never evicts one of this layer.
                for (int pass = 0; pass < 2; pass++)
                {
                    for (int i = 0; i < blocks.Count; i++)
                    {
                        bool mirrored = _mirrors.ContainsKey(blocks[i]);
                        if (mirrored != (pass == 0))
                        {
                            continue;
                        }

                        nint slot = Acquire(blocks[i], views[i].Tokens, pin: true);
                        if (slot == 0)
                        {
                            Unpin(pinned);
                            reason = "the gpu tier is full of mirrors other queries are reading";
                            return null;
                        }

                        pinned.Add(blocks[i]);
                        promoted += mirrored ? 0 : 1;
                        slots[i] = (ulong)slot;
                    }
                }

                DeviceBuffer table = RentTable(blocks.Count * 8L);
                try
                {
                    table.Upload<ulong>(slots);
                }
                catch
                {
                    ReturnTable(table);
                    throw;
                }

                KvBlock[] held = [.. pinned];
                reason = "";
                return new DeviceLayer(model.Geometry, GpuKvSource.Blocks(table.Pointer, tokens), Backend, blocks.Count, promoted, () => Release(held, table));
            }
            catch (CudaException e)
            {
                Unpin(pinned);
                reason = "a CUDA call failed: " + e.Message;
                return null;
            }
        }
    }

    /// <summary>Frees every slab and the backend; mirrors are gone (the CPU copies are not affected).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _mirrors.Clear();
            _lru.Clear();
            foreach (DeviceBuffer t in _tables)
            {
                t.Dispose();
            }

            _tables.Clear();
            foreach (Pool p in _pools.Values)
            {
                p.Allocator.Dispose();
            }

            _pools.Clear();
            _mirroredBytes = 0;
            Backend.Dispose();
        }
    }

    private static void Upload(nint slot, KvBlock block, int fromRow, int toRow)
    {
        ModelSchema m = block.Model;
        long region = m.BlockBytes / 2;
        if (fromRow == 0 && toRow == block.Capacity)
        {
            // Keys then values, as in the CPU slot: one copy.
            CudaRuntime.CopyToDevice(slot, block.Memory, m.BlockBytes);
            return;
        }

        long headStride = (long)block.Capacity * m.RowBytes;
        long bytes = (long)(toRow - fromRow) * m.RowBytes;
        for (int h = 0; h < m.NumKvHeads; h++)
        {
            nint offset = (nint)((h * headStride) + ((long)fromRow * m.RowBytes));
            CudaRuntime.CopyToDevice(slot + offset, block.Memory + offset, bytes);
            CudaRuntime.CopyToDevice(slot + (nint)region + offset, block.Values + offset, bytes);
        }
    }

    /// <summary>The block's mirror holding at least <paramref name="rows"/> rows (made or topped up), or 0 when no slot is free. Caller holds the gate.</summary>
    private nint Acquire(KvBlock block, int rows, bool pin)
    {
        if (_mirrors.TryGetValue(block, out Mirror? m))
        {
            if (m.Rows < rows)
            {
                // Rows below a block's count never change, so only the new ones travel; readers of the old rows are undisturbed.
                Upload(m.Slot, block, m.Rows, rows);
                _uploadedBytes += 2L * (rows - m.Rows) * block.Model.RowBytes * block.Model.NumKvHeads;
                m.Rows = rows;
            }

            m.Dropped = false;
            _hits++;
            _lru.Remove(m.Node);
            _lru.AddLast(m.Node);
            if (pin)
            {
                m.Pins++;
            }

            return m.Slot;
        }

        Pool pool = PoolFor(block.Model);
        nint slot = AllocateSlot(pool);
        if (slot == 0)
        {
            return 0;
        }

        try
        {
            Upload(slot, block, 0, rows);
        }
        catch
        {
            pool.Allocator.Free(slot);
            throw;
        }

        _uploadedBytes += 2L * rows * block.Model.RowBytes * block.Model.NumKvHeads;
        _misses++;
        m = new Mirror(slot, pool, _lru.AddLast(block)) { Rows = rows, Pins = pin ? 1 : 0 };
        _mirrors.Add(block, m);
        _mirroredBytes += pool.Allocator.SlotBytes;
        return slot;
    }

    private nint AllocateSlot(Pool pool)
    {
        if (pool.Allocator.SlotsInUse >= pool.ReservedSlots)
        {
            if (_reserved + pool.SlabBytes <= BudgetBytes)
            {
                // A new slab (cudaMalloc) fits the budget.
                try
                {
                    if (pool.Allocator.TryAllocate(out nint fresh))
                    {
                        _reserved += pool.SlabBytes;
                        pool.ReservedSlots += pool.SlotsPerSlab;
                        return fresh;
                    }
                }
                catch (CudaException)
                {
                    // The device is out of memory below the budget: evict instead.
                }
            }

            if (!EvictOne(pool))
            {
                return 0;
            }
        }

        return pool.Allocator.TryAllocate(out nint slot) ? slot : 0;
    }

    private bool EvictOne(Pool pool)
    {
        for (LinkedListNode<KvBlock>? n = _lru.First; n is not null; n = n.Next)
        {
            Mirror m = _mirrors[n.Value];
            if (m.Pins == 0 && m.Pool == pool)
            {
                Remove(n.Value, m);
                _evictions++;
                return true;
            }
        }

        return false;
    }

    private void Remove(KvBlock block, Mirror m)
    {
        _lru.Remove(m.Node);
        _mirrors.Remove(block);
        m.Pool.Allocator.Free(m.Slot);
        _mirroredBytes -= m.Pool.Allocator.SlotBytes;
    }

    private void Unpin(List<KvBlock> blocks)
    {
        foreach (KvBlock b in blocks)
        {
            if (_mirrors.TryGetValue(b, out Mirror? m))
            {
                m.Pins--;
                if (m.Pins == 0 && m.Dropped)
                {
                    Remove(b, m);
                }
            }
        }
    }

    private void Release(KvBlock[] blocks, DeviceBuffer table)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                table.Dispose();
                return;
            }

            Unpin([.. blocks]);
            ReturnTable(table);
        }
    }

    private Pool PoolFor(ModelSchema model)
    {
        long slotBytes = model.BlockBytes;
        if (!_pools.TryGetValue(slotBytes, out Pool? pool))
        {
            int perSlab = (int)Math.Clamp(BudgetBytes / Math.Max(1, slotBytes) / 8, 1, MaxSlotsPerSlab);
            pool = new Pool(new GpuSlabAllocator(slotBytes, long.MaxValue, perSlab, Device), perSlab);
            _pools.Add(slotBytes, pool);
        }

        return pool;
    }

    private DeviceBuffer RentTable(long bytes)
    {
        int best = -1;
        for (int i = 0; i < _tables.Count; i++)
        {
            if (_tables[i].Bytes >= bytes && (best < 0 || _tables[i].Bytes < _tables[best].Bytes))
            {
                best = i;
            }
        }

        if (best >= 0)
        {
            DeviceBuffer t = _tables[best];
            _tables.RemoveAt(best);
            return t;
        }

        return new DeviceBuffer(Math.Max(4096, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes)), Device);
    }

    private void ReturnTable(DeviceBuffer table)
    {
        if (_tables.Count < MaxPooledTables)
        {
            _tables.Add(table);
        }
        else
        {
            table.Dispose();
        }
    }

    private sealed class Pool(GpuSlabAllocator allocator, int slotsPerSlab)
    {
        public GpuSlabAllocator Allocator { get; } = allocator;

        public int SlotsPerSlab { get; } = slotsPerSlab;

        public long SlabBytes => Allocator.SlotBytes * SlotsPerSlab;

        public long ReservedSlots { get; set; }
    }

    private sealed class Mirror(nint slot, Pool pool, LinkedListNode<KvBlock> node)
    {
        public nint Slot { get; } = slot;

        public Pool Pool { get; } = pool;

        public LinkedListNode<KvBlock> Node { get; } = node;

        public int Rows { get; set; }

        public int Pins { get; set; }

        public bool Dropped { get; set; }
    }
}

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
/// The tier owns device memory only; it runs no kernels (the query engine attends over a <see cref="DeviceLayer"/>).
/// Hot path: a block finds its mirror through a field (no lookup), recency is a logical clock (eviction sorts
/// the candidates once per promotion batch), and a layer whose slots did not change reuses its device block
/// table without a copy. Thread-safe: one lock guards the mirrors; copies to the device happen under it.
/// </summary>
public sealed class CudaDeviceTier : IDeviceTier, IDisposable
{
    private const int MaxSlotsPerSlab = 64;
    private const int MaxCachedTables = 16;

    private readonly Lock _gate = new();
    private readonly Dictionary<long, Pool> _pools = [];
    private readonly HashSet<Mirror> _mirrors = [];
    private readonly List<Table> _tables = [];
    private long _clock;
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
        // Fails here, not at the first query, when CUDA is unavailable or the ordinal names no usable device.
        _ = CudaRuntime.MemoryInfo(device);
        BudgetBytes = budgetBytes;
        Device = device;
    }

    /// <inheritdoc />
    public string Name => "gpu";

    /// <summary>Most device bytes the tier's slabs may take.</summary>
    public long BudgetBytes { get; }

    /// <summary>The CUDA device.</summary>
    public int Device { get; }

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
            return MirrorOf(block) is not null;
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
            if (_disposed || MirrorOf(block) is not Mirror m)
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

            Remove(m);
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
            var held = new Mirror[blocks.Count];
            int pinned = 0;
            int promoted = 0;
            Queue<Mirror>? victims = null;
            try
            {
                // Blocks already mirrored first (pinned, so making room for the others never evicts one of this layer).
                long now = ++_clock;
                List<int>? missing = null;
                for (int i = 0; i < blocks.Count; i++)
                {
                    if (MirrorOf(blocks[i]) is Mirror m)
                    {
                        TopUp(m, views[i].Tokens);
                        m.LastUse = now;
                        m.Pins++;
                        _hits++;
                        held[pinned++] = m;
                        slots[i] = (ulong)m.Slot;
                    }
                    else
                    {
                        (missing ??= []).Add(i);
                    }
                }

                foreach (int i in missing ?? [])
                {
                    Mirror? m = Promote(blocks[i], views[i].Tokens, ref victims);
                    if (m is null)
                    {
                        Unpin(held, pinned);
                        reason = "the gpu tier is full of mirrors other queries are reading";
                        return null;
                    }

                    m.Pins++;
                    held[pinned++] = m;
                    promoted++;
                    slots[i] = (ulong)m.Slot;
                }

                Table table = TableFor(slots);
                reason = "";
                return new DeviceLayer(model.Geometry, GpuKvSource.Blocks(table.Buffer.Pointer, tokens), Device, blocks.Count, promoted, () => Release(held, table));
            }
            catch (CudaException e)
            {
                Unpin(held, pinned);
                reason = "a CUDA call failed: " + e.Message;
                return null;
            }
        }
    }

    /// <summary>Frees every slab and block table; mirrors are gone (the CPU copies are not affected).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (Mirror m in _mirrors)
            {
                m.Block.DeviceMirror = null;
            }

            _mirrors.Clear();
            foreach (Table t in _tables)
            {
                t.Buffer.Dispose();
            }

            _tables.Clear();
            foreach (Pool p in _pools.Values)
            {
                p.Allocator.Dispose();
            }

            _pools.Clear();
            _mirroredBytes = 0;
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
        Queue<Mirror>? victims = null;
        Mirror? m = MirrorOf(block);
        if (m is not null)
        {
            TopUp(m, rows);
            m.LastUse = ++_clock;
            _hits++;
        }
        else
        {
            m = Promote(block, rows, ref victims);
            if (m is null)
            {
                return 0;
            }
        }

        if (pin)
        {
            m.Pins++;
        }

        return m.Slot;
    }

    private Mirror? MirrorOf(KvBlock block) => block.DeviceMirror is Mirror m && m.Tier == this ? m : null;

    /// <summary>Copies rows [m.Rows, rows) of a growing tail block. Rows below a block's count never change, so only the new ones travel and readers of the old rows are undisturbed.</summary>
    private void TopUp(Mirror m, int rows)
    {
        m.Dropped = false;
        if (m.Rows < rows)
        {
            Upload(m.Slot, m.Block, m.Rows, rows);
            _uploadedBytes += 2L * (rows - m.Rows) * m.Block.Model.RowBytes * m.Block.Model.NumKvHeads;
            m.Rows = rows;
        }
    }

    /// <summary>A new mirror of the block's first <paramref name="rows"/> rows, evicting the least recently used unpinned mirrors of its slot size if needed; null when none is left.</summary>
    private Mirror? Promote(KvBlock block, int rows, ref Queue<Mirror>? victims)
    {
        Pool pool = PoolFor(block.Model);
        nint slot = AllocateSlot(pool, ref victims);
        if (slot == 0)
        {
            return null;
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
        var m = new Mirror(this, block, slot, pool) { Rows = rows, LastUse = ++_clock };
        block.DeviceMirror = m;
        _mirrors.Add(m);
        _mirroredBytes += pool.Allocator.SlotBytes;
        return m;
    }

    private nint AllocateSlot(Pool pool, ref Queue<Mirror>? victims)
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

            if (!EvictOne(pool, ref victims))
            {
                return 0;
            }
        }

        return pool.Allocator.TryAllocate(out nint slot) ? slot : 0;
    }

    /// <summary>Evicts the least recently used unpinned mirror of the pool; the candidates are sorted once per batch.</summary>
    private bool EvictOne(Pool pool, ref Queue<Mirror>? victims)
    {
        if (victims is null)
        {
            var candidates = new List<Mirror>();
            foreach (Mirror m in _mirrors)
            {
                if (m.Pins == 0 && m.Pool == pool)
                {
                    candidates.Add(m);
                }
            }

            candidates.Sort((x, y) => x.LastUse.CompareTo(y.LastUse));
            victims = new Queue<Mirror>(candidates);
        }

        while (victims.TryDequeue(out Mirror? m))
        {
            if (m.Pins == 0 && m.Block.DeviceMirror == m)
            {
                Remove(m);
                _evictions++;
                return true;
            }
        }

        return false;
    }

    private void Remove(Mirror m)
    {
        m.Block.DeviceMirror = null;
        _mirrors.Remove(m);
        m.Pool.Allocator.Free(m.Slot);
        _mirroredBytes -= m.Pool.Allocator.SlotBytes;
    }

    private void Unpin(Mirror[] mirrors, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Mirror m = mirrors[i];
            m.Pins--;
            if (m.Pins == 0 && m.Dropped && m.Block.DeviceMirror == m)
            {
                Remove(m);
            }
        }
    }

    private void Release(Mirror[] held, Table table)
    {
        lock (_gate)
        {
            table.Users--;
            if (_disposed)
            {
                return;
            }

            Unpin(held, held.Length);
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

    /// <summary>
    /// A device block table holding <paramref name="slots"/>: a cached one with the same slots (no copy; tables are
    /// only read by kernels, so readers can share one), else an idle cached one large enough, overwritten, else a new one.
    /// </summary>
    private Table TableFor(ulong[] slots)
    {
        long bytes = slots.Length * 8L;
        Table? idle = null;
        foreach (Table t in _tables)
        {
            if (t.Slots.AsSpan().SequenceEqual(slots))
            {
                t.Users++;
                t.LastUse = ++_clock;
                return t;
            }

            if (t.Users == 0 && t.Buffer.Bytes >= bytes && (idle is null || t.LastUse < idle.LastUse))
            {
                idle = t;
            }
        }

        if (idle is null)
        {
            if (_tables.Count >= MaxCachedTables && _tables.Where(t => t.Users == 0).MinBy(t => t.LastUse) is Table old)
            {
                _tables.Remove(old);
                old.Buffer.Dispose();
            }

            idle = new Table(new DeviceBuffer(Math.Max(4096, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)bytes)), Device));
            _tables.Add(idle);
        }

        idle.Slots = [];
        idle.Buffer.Upload<ulong>(slots);
        idle.Slots = slots;
        idle.Users = 1;
        idle.LastUse = ++_clock;
        return idle;
    }

    private sealed class Pool(GpuSlabAllocator allocator, int slotsPerSlab)
    {
        public GpuSlabAllocator Allocator { get; } = allocator;

        public int SlotsPerSlab { get; } = slotsPerSlab;

        public long SlabBytes => Allocator.SlotBytes * SlotsPerSlab;

        public long ReservedSlots { get; set; }
    }

    private sealed class Mirror(CudaDeviceTier tier, KvBlock block, nint slot, Pool pool)
    {
        public CudaDeviceTier Tier { get; } = tier;

        public KvBlock Block { get; } = block;

        public nint Slot { get; } = slot;

        public Pool Pool { get; } = pool;

        public int Rows { get; set; }

        public int Pins { get; set; }

        public long LastUse { get; set; }

        public bool Dropped { get; set; }
    }

    private sealed class Table(DeviceBuffer buffer)
    {
        public DeviceBuffer Buffer { get; } = buffer;

        public ulong[] Slots { get; set; } = [];

        public int Users { get; set; }

        public long LastUse { get; set; }
    }
}

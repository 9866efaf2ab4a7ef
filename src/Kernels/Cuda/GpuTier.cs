namespace KvDb.Kernels.Cuda;

/// <summary>
/// The GPU tier of a store: which blocks have a copy in GPU slab slots, promotion (host block → slot),
/// demotion (slot freed, optionally copied back to host) and least-recently-used eviction when the
/// slab budget is spent. Blocks are named by the caller's 64-bit ids (the store's block directory
/// owns the naming); a block that queries are reading is pinned and never evicted. The tier only
/// copies: the host copy in the CPU arena stays the source of truth, so demotion without copy-back
/// loses nothing. Thread-safe.
/// </summary>
public sealed class GpuTier : IDisposable
{
    private readonly object _gate = new();
    private readonly GpuSlabAllocator _slots;
    private readonly Dictionary<long, Entry> _entries = [];
    private readonly LinkedList<long> _lru = new();  // first = least recently used

    /// <summary>A tier for blocks of <paramref name="geometry"/> holding at most <paramref name="budgetBytes"/> of device memory.</summary>
    public GpuTier(in AttentionGeometry geometry, long budgetBytes, int slotsPerSlab = 64, int device = 0)
    {
        geometry.Validate();
        Geometry = geometry;
        _slots = GpuSlabAllocator.ForBlocks(geometry, budgetBytes, slotsPerSlab, device);
    }

    /// <summary>Shape of the blocks this tier holds.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>Blocks resident on the GPU.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Device bytes reserved by the tier's slabs.</summary>
    public long ReservedBytes => _slots.ReservedBytes;

    /// <summary>Promotions that evicted another block, since creation.</summary>
    public long Evictions { get; private set; }

    /// <summary>True when the block has a GPU copy.</summary>
    public bool Contains(long blockId)
    {
        lock (_gate)
        {
            return _entries.ContainsKey(blockId);
        }
    }

    /// <summary>
    /// Copies a host block into the tier (refreshing the copy when it is already resident, e.g. after the
    /// open tail block grew) and returns its slot. When the budget is spent the least recently used
    /// unpinned block is evicted; false when every resident block is pinned.
    /// </summary>
    public bool TryPromote(long blockId, in KvBlockRef block, out nint slot)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(blockId, out Entry? entry))
            {
                Touch(entry);
                slot = entry.Slot;
            }
            else
            {
                if (!_slots.TryAllocate(out slot))
                {
                    if (!EvictOne())
                    {
                        slot = 0;
                        return false;
                    }

                    if (!_slots.TryAllocate(out slot))
                    {
                        return false;
                    }
                }

                entry = new Entry(slot, _lru.AddLast(blockId));
                _entries.Add(blockId, entry);
            }

            _slots.Upload(slot, block, Geometry);
            return true;
        }
    }

    /// <summary>The block's slot (and marks it recently used), or false when it is not resident.</summary>
    public bool TryGetSlot(long blockId, out nint slot)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(blockId, out Entry? entry))
            {
                Touch(entry);
                slot = entry.Slot;
                return true;
            }

            slot = 0;
            return false;
        }
    }

    /// <summary>Keeps a resident block from eviction until a matching <see cref="Unpin"/>.</summary>
    public void Pin(long blockId)
    {
        lock (_gate)
        {
            Get(blockId).Pins++;
        }
    }

    /// <summary>Releases one <see cref="Pin"/>.</summary>
    public void Unpin(long blockId)
    {
        lock (_gate)
        {
            Entry e = Get(blockId);
            if (e.Pins == 0)
            {
                throw new InvalidOperationException($"block {blockId} is not pinned");
            }

            e.Pins--;
        }
    }

    /// <summary>Drops the GPU copy; false when it was not resident. Throws for a pinned block.</summary>
    public bool Demote(long blockId)
    {
        lock (_gate)
        {
            if (!_entries.TryGetValue(blockId, out Entry? e))
            {
                return false;
            }

            if (e.Pins > 0)
            {
                throw new InvalidOperationException($"block {blockId} is pinned by {e.Pins} reader(s)");
            }

            Remove(blockId, e);
            return true;
        }
    }

    /// <summary>Copies the GPU copy back to host regions (each RegionBytes long), then drops it.</summary>
    public void Demote(long blockId, nint keysDestination, nint valuesDestination)
    {
        lock (_gate)
        {
            Entry e = Get(blockId);
            if (e.Pins > 0)
            {
                throw new InvalidOperationException($"block {blockId} is pinned by {e.Pins} reader(s)");
            }

            _slots.Download(e.Slot, keysDestination, valuesDestination, Geometry);
            Remove(blockId, e);
        }
    }

    /// <summary>
    /// The block table of a layer whose blocks are <paramref name="blockIds"/> in position order (all resident),
    /// written to <paramref name="table"/> (8 bytes per block), as a source for <see cref="CudaAttentionBackend"/>.
    /// </summary>
    public GpuKvSource BlockTable(ReadOnlySpan<long> blockIds, long numTokens, DeviceBuffer table)
    {
        if (table.Bytes < blockIds.Length * 8L)
        {
            throw new ArgumentException($"the table buffer needs {blockIds.Length * 8L} bytes");
        }

        if (numTokens > (long)blockIds.Length * Geometry.BlockCapacity)
        {
            throw new ArgumentException($"{blockIds.Length} blocks cannot hold {numTokens} tokens");
        }

        ulong[] slots = new ulong[blockIds.Length];
        lock (_gate)
        {
            for (int i = 0; i < blockIds.Length; i++)
            {
                if (!_entries.TryGetValue(blockIds[i], out Entry? e))
                {
                    throw new KeyNotFoundException($"block {blockIds[i]} is not in the GPU tier");
                }

                Touch(e);
                slots[i] = (ulong)e.Slot;
            }
        }

        table.Upload<ulong>(slots);
        return GpuKvSource.Blocks(table.Pointer, numTokens);
    }

    /// <summary>Frees every slot.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _entries.Clear();
            _lru.Clear();
            _slots.Dispose();
        }
    }

    private Entry Get(long blockId) =>
        _entries.TryGetValue(blockId, out Entry? e) ? e : throw new KeyNotFoundException($"block {blockId} is not in the GPU tier");

    private void Touch(Entry e)
    {
        _lru.Remove(e.Node);
        _lru.AddLast(e.Node);
    }

    private bool EvictOne()
    {
        for (LinkedListNode<long>? n = _lru.First; n is not null; n = n.Next)
        {
            Entry e = _entries[n.Value];
            if (e.Pins == 0)
            {
                Remove(n.Value, e);
                Evictions++;
                return true;
            }
        }

        return false;
    }

    private void Remove(long blockId, Entry e)
    {
        _lru.Remove(e.Node);
        _entries.Remove(blockId);
        _slots.Free(e.Slot);
    }

    private sealed class Entry(nint slot, LinkedListNode<long> node)
    {
        public nint Slot { get; } = slot;

        public LinkedListNode<long> Node { get; } = node;

        public int Pins { get; set; }
    }
}

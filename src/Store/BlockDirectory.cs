using System.Collections.Concurrent;

namespace KvDb.Store;

/// <summary>
/// The global map from content address to the one shared copy of a full block, plus, per chain value, the
/// contexts whose committed tokens pass through it (to extend a prefix match into a partial block).
/// Lookups are lock-free; <see cref="Publish"/>, <see cref="Sweep"/> and the context index are called under
/// the store's metadata lock, so their order matches the write-ahead log's.
/// </summary>
internal sealed class BlockDirectory
{
    private readonly ConcurrentDictionary<UInt128, ChainNode> _nodes = new();
    private readonly ConcurrentQueue<UInt128> _emptied = new();
    private readonly Dictionary<UInt128, List<KvContext>> _contextsAt = [];
    private long _published;

    /// <summary>Blocks currently published.</summary>
    public long PublishedBlocks => Interlocked.Read(ref _published);

    /// <summary>Where block events go (stored and removed here; tier moves from the block manager).</summary>
    public Events.KvEventHub Events { get; } = new();

    /// <summary>The published block at <paramref name="address"/> with a new reference, if it exists and has the same content checksum.</summary>
    public KvBlock? AcquireSame(BlockAddress address, ulong checksum)
    {
        KvBlock? b = Peek(address.Chain, address.Layer);
        return b is not null && b.Checksum == checksum && !b.Corrupt && b.TryAddRef() ? b : null;
    }

    /// <summary>True when the published block at <paramref name="address"/> has this content checksum (no reference taken).</summary>
    public bool Holds(BlockAddress address, ulong checksum) =>
        Peek(address.Chain, address.Layer) is KvBlock b && b.Checksum == checksum;

    /// <summary>The published block at (<paramref name="chain"/>, <paramref name="layer"/>) with a new reference, or null.</summary>
    public KvBlock? Acquire(UInt128 chain, int layer)
    {
        KvBlock? b = Peek(chain, layer);
        return b is not null && !b.Corrupt && b.TryAddRef() ? b : null;
    }

    /// <summary>True when every one of <paramref name="layers"/> layers has a published block at <paramref name="chain"/>.</summary>
    public bool IsComplete(UInt128 chain, int layers) =>
        _nodes.TryGetValue(chain, out ChainNode? node) && Volatile.Read(ref node.Count) >= layers;

    /// <summary>Makes a full block the shared copy for its address; false when another block already is (this one stays private).</summary>
    public bool Publish(KvBlock block)
    {
        BlockAddress a = block.Address ?? throw new InvalidOperationException("only full, addressed blocks can be published");
        ChainNode node = _nodes.GetOrAdd(a.Chain, static (_, layers) => new ChainNode(layers), block.Model.NumLayers);
        if (Interlocked.CompareExchange(ref node.Layers[a.Layer], block, null) is not null)
        {
            return false;
        }

        Interlocked.Increment(ref node.Count);
        Interlocked.Increment(ref _published);
        block.Published = true;
        Events.Emit(Store.Events.KvEventKind.Stored, block.Model.Name, a.ToString(), block.Model.BlockSize, block.IsResident ? "cpu" : "disk");
        return true;
    }

    /// <summary>Removes a freed block from the directory (any thread).</summary>
    public void Unpublish(KvBlock block)
    {
        if (!block.Published || block.Address is not BlockAddress a)
        {
            return;
        }

        block.Published = false;
        if (_nodes.TryGetValue(a.Chain, out ChainNode? node) && ReferenceEquals(Interlocked.CompareExchange(ref node.Layers[a.Layer], null, block), block))
        {
            Interlocked.Decrement(ref _published);
            Events.Emit(Store.Events.KvEventKind.Removed, block.Model.Name, a.ToString(), block.Model.BlockSize, string.Empty);
            if (Interlocked.Decrement(ref node.Count) == 0)
            {
                _emptied.Enqueue(a.Chain);
            }
        }
    }

    /// <summary>Drops chain values left without blocks.</summary>
    public void Sweep()
    {
        while (_emptied.TryDequeue(out UInt128 chain))
        {
            if (_nodes.TryGetValue(chain, out ChainNode? node) && Volatile.Read(ref node.Count) == 0)
            {
                _nodes.TryRemove(KeyValuePair.Create(chain, node));
            }
        }
    }

    /// <summary>Records that <paramref name="context"/>'s committed tokens pass through <paramref name="chain"/>.</summary>
    public void Register(UInt128 chain, KvContext context)
    {
        if (!_contextsAt.TryGetValue(chain, out List<KvContext>? list))
        {
            list = [];
            _contextsAt.Add(chain, list);
        }

        list.Add(context);
    }

    /// <summary>Undoes <see cref="Register"/>.</summary>
    public void Unregister(UInt128 chain, KvContext context)
    {
        if (_contextsAt.TryGetValue(chain, out List<KvContext>? list))
        {
            list.Remove(context);
            if (list.Count == 0)
            {
                _contextsAt.Remove(chain);
            }
        }
    }

    /// <summary>Contexts whose committed tokens pass through <paramref name="chain"/> (do not modify).</summary>
    public List<KvContext>? ContextsAt(UInt128 chain) => _contextsAt.TryGetValue(chain, out List<KvContext>? list) ? list : null;

    private KvBlock? Peek(UInt128 chain, int layer) =>
        _nodes.TryGetValue(chain, out ChainNode? node) && (uint)layer < (uint)node.Layers.Length ? Volatile.Read(ref node.Layers[layer]) : null;
}

using KvDb.Store;

namespace KvDb.Index.Catalog;

/// <summary>
/// The <see cref="IndexContentKey"/> of every leading sealed block of one context layer, kept between
/// updates so only blocks that are new (or changed after a rollback) are hashed again.
/// </summary>
internal sealed class BlockContentKeys
{
    private UInt128[] _keys = [];
    private BlockAddress[] _addresses = [];
    private ulong[] _checksums = [];

    /// <summary>Leading sealed blocks at the last refresh.</summary>
    public int Count { get; private set; }

    /// <summary>The content key of blocks [0, block].</summary>
    public UInt128 this[int block] => _keys[block];

    /// <summary>Re-reads the snapshot's leading sealed blocks; returns how many of them are unchanged since the last refresh.</summary>
    public int Refresh(LayerSnapshot layer)
    {
        int full = 0;
        while (full < layer.Blocks.Length && layer.TryGetSealed(full, out _, out _))
        {
            full++;
        }

        if (_keys.Length < full)
        {
            int capacity = Math.Max(full, _keys.Length * 2);
            Array.Resize(ref _keys, capacity);
            Array.Resize(ref _addresses, capacity);
            Array.Resize(ref _checksums, capacity);
        }

        int unchanged = 0;
        int known = Math.Min(Count, full);
        while (unchanged < known && layer.TryGetSealed(unchanged, out BlockAddress a, out ulong c) && a == _addresses[unchanged] && c == _checksums[unchanged])
        {
            unchanged++;
        }

        UInt128 previous = unchanged == 0 ? UInt128.Zero : _keys[unchanged - 1];
        for (int i = unchanged; i < full; i++)
        {
            layer.TryGetSealed(i, out BlockAddress a, out ulong c);
            previous = IndexContentKey.Next(previous, a, c);
            _keys[i] = previous;
            _addresses[i] = a;
            _checksums[i] = c;
        }

        Count = full;
        return unchanged;
    }
}

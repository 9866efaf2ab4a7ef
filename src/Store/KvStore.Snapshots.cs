using System.Buffers;
using System.Runtime.InteropServices;
using KvDb.Kernels;

namespace KvDb.Store;

// Reads: pinned layer snapshots for queries, token ids, and whether a block is still held.
public partial class KvStore
{
    /// <inheritdoc />
    public LayerSnapshot OpenLayer(string contextId, int layer, CancellationToken cancellationToken = default)
    {
        KvContext c = Find(contextId);
        c.Model.CheckLayer(layer);
        lock (c.Gate)
        {
            ContextLayer l = c.Layers[layer];
            int count = l.Blocks.Count;
            KvBlock[] blocks = ArrayPool<KvBlock>.Shared.Rent(count);
            KvBlockRef[] views = ArrayPool<KvBlockRef>.Shared.Rent(count);
            l.Blocks.CopyTo(blocks, 0);
            int referenced = 0;
            int pinned = 0;
            try
            {
                for (; referenced < count; referenced++)
                {
                    blocks[referenced].AddRef();
                }

                Blocks.PinAll(blocks.AsSpan(0, count), ref pinned, cancellationToken);
                long start = 0;
                for (int i = 0; i < count; i++)
                {
                    int rows = (int)Math.Min(c.Model.BlockSize, l.Length - start);
                    views[i] = blocks[i].View(rows, start);
                    start += rows;
                }
            }
            catch
            {
                for (int i = 0; i < referenced; i++)
                {
                    if (i < pinned)
                    {
                        Blocks.Unpin(blocks[i]);
                    }

                    blocks[i].Release();
                }

                ArrayPool<KvBlock>.Shared.Return(blocks, clearArray: true);
                ArrayPool<KvBlockRef>.Shared.Return(views, clearArray: true);
                throw;
            }

            return new LayerSnapshot(c.Model, layer, blocks, views, count, l.Length, Blocks);
        }
    }

    /// <summary>Per layer, where the context's blocks are now (a snapshot; nothing is pinned or moved).</summary>
    public IReadOnlyList<LayerTiers> DescribeTiers(string contextId)
    {
        KvContext c = Find(contextId);
        lock (c.Gate)
        {
            var layers = new List<LayerTiers>(c.Layers.Length);
            for (int layer = 0; layer < c.Layers.Length; layer++)
            {
                ContextLayer l = c.Layers[layer];
                int resident = 0, onDisk = 0, shared = 0;
                foreach (KvBlock b in l.Blocks)
                {
                    resident += b.IsResident ? 1 : 0;
                    onDisk += b.DiskAddress >= 0 ? 1 : 0;
                    shared += b.Refs > 1 ? 1 : 0;
                }

                layers.Add(new LayerTiers(layer, l.Length, l.Blocks.Count, resident, onDisk, shared));
            }

            return layers;
        }
    }

    /// <inheritdoc />
    public int[] ReadTokenIds(string contextId, long start, long end)
    {
        KvContext c = Find(contextId);
        lock (c.Gate)
        {
            if (start < 0 || end < start || end > c.TokenIds.Count)
            {
                throw KvDbException.Invalid($"token range [{start}, {end}) is outside context \"{contextId}\"'s {c.TokenIds.Count} token ids");
            }

            return CollectionsMarshal.AsSpan(c.TokenIds).Slice((int)start, (int)(end - start)).ToArray();
        }
    }

    /// <inheritdoc />
    public bool HoldsBlock(BlockAddress address, ulong checksum)
    {
        if (_directory.Holds(address, checksum))
        {
            return true;
        }

        // A private block (its address is published with other bytes) is only reachable through its contexts.
        foreach (KvContext c in _contexts.Values)
        {
            if ((uint)address.Layer >= (uint)c.Model.NumLayers)
            {
                continue;
            }

            lock (c.Gate)
            {
                foreach (KvBlock b in c.Layers[address.Layer].Blocks)
                {
                    if (b.Address == address && b.Checksum == checksum)
                    {
                        return true;
                    }
                }
            }
        }

        return false;
    }

    /// <summary>A copy of a context layer's block list (tests and diagnostics).</summary>
    internal List<KvBlock> BlocksOf(string id, int layer)
    {
        KvContext c = Find(id);
        lock (c.Gate)
        {
            return [.. c.Layers[layer].Blocks];
        }
    }
}

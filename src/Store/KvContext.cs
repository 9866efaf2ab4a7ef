using System.Runtime.InteropServices;

namespace KvDb.Store;

/// <summary>
/// A stored sequence: its model, namespace, token ids, the hash chain over its full blocks, and per layer a
/// list of block references plus an open tail. Guarded by its own lock.
/// </summary>
internal sealed class KvContext
{
    public KvContext(string id, ModelSchema model, string ns, long createdUnixMs, long expiresAtUnixMs)
    {
        Id = id;
        Model = model;
        Namespace = ns;
        Root = BlockHashing.Root(model.Name, ns);
        CreatedUnixMs = createdUnixMs;
        ExpiresAtUnixMs = expiresAtUnixMs;
        Layers = new ContextLayer[model.NumLayers];
        CommittedLengths = new long[model.NumLayers];
        for (int i = 0; i < Layers.Length; i++)
        {
            Layers[i] = new ContextLayer();
        }
    }

    public object Gate { get; } = new();

    public string Id { get; }

    public ModelSchema Model { get; }

    public string Namespace { get; }

    /// <summary>Hash-chain start for the context's model and namespace.</summary>
    public UInt128 Root { get; }

    public long CreatedUnixMs { get; }

    /// <summary>When the TTL sweep deletes the context (Unix ms); 0 = never. Changed only under the metadata lock.</summary>
    public long ExpiresAtUnixMs { get; set; }

    /// <summary>True while the context is pinned: its blocks are not demoted below <see cref="PinTier"/>. Changed under the metadata lock and the gate.</summary>
    public bool Pinned { get; set; }

    /// <summary>The tier the pin holds the blocks in (meaningful while <see cref="Pinned"/>; <see cref="PinTier.Cpu"/> otherwise).</summary>
    public PinTier PinTier { get; set; }

    /// <summary>Per layer, the GPU-tier mirrors a <see cref="PinTier.Gpu"/> pin holds (null entries: no full block yet); null otherwise.</summary>
    public DeviceLayer?[]? DevicePins { get; set; }

    /// <summary>Device-tier bytes <see cref="DevicePins"/> hold (full blocks × block bytes).</summary>
    public long DevicePinnedBytes { get; set; }

    /// <summary>Per layer, how many leading (committed, full) blocks the context's pin holds; null while unpinned.</summary>
    public int[]? PinnedPrefix { get; set; }

    public ContextLayer[] Layers { get; }

    /// <summary>Per-layer length as of the last commit (what forks, prefix sharing and checkpoints see).</summary>
    public long[] CommittedLengths { get; }

    /// <summary>Token ids of positions [0, max layer length); every layer's chunks must agree with them.</summary>
    public List<int> TokenIds { get; } = [];

    /// <summary>Chain value of each full block position covered by <see cref="TokenIds"/>.</summary>
    public List<UInt128> Chain { get; } = [];

    /// <summary>How many chain values (after the root) this context is registered under in the directory's context index.</summary>
    public int RegisteredBlocks { get; set; }

    /// <summary>The open append transaction, if any.</summary>
    public AppendTransaction? OpenTransaction { get; set; }

    public bool Deleted { get; set; }

    public long NumTokens
    {
        get
        {
            long min = long.MaxValue;
            foreach (ContextLayer l in Layers)
            {
                min = Math.Min(min, l.Length);
            }

            return min;
        }
    }

    /// <summary>Tokens committed in every layer.</summary>
    public long CommittedTokens
    {
        get
        {
            long min = long.MaxValue;
            foreach (long l in CommittedLengths)
            {
                min = Math.Min(min, l);
            }

            return min;
        }
    }

    /// <summary>Tokens committed in at least one layer (the committed part of <see cref="TokenIds"/>).</summary>
    public long CommittedTokenIds
    {
        get
        {
            long max = 0;
            foreach (long l in CommittedLengths)
            {
                max = Math.Max(max, l);
            }

            return max;
        }
    }

    /// <summary>Appends token ids and extends the chain over newly completed blocks.</summary>
    public void AddTokens(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            TokenIds.Add(id);
        }

        int b = Model.BlockSize;
        ReadOnlySpan<int> all = CollectionsMarshal.AsSpan(TokenIds);
        while ((Chain.Count + 1) * b <= all.Length)
        {
            UInt128 parent = Chain.Count == 0 ? Root : Chain[^1];
            Chain.Add(BlockHashing.Next(parent, all.Slice(Chain.Count * b, b)));
        }
    }

    /// <summary>Drops token ids (and chain values) at and after <paramref name="count"/>.</summary>
    public void TrimTokens(long count)
    {
        if (TokenIds.Count > count)
        {
            TokenIds.RemoveRange((int)count, TokenIds.Count - (int)count);
        }

        int blocks = (int)(count / Model.BlockSize);
        if (Chain.Count > blocks)
        {
            Chain.RemoveRange(blocks, Chain.Count - blocks);
        }
    }

    /// <summary>Chain value below which block <paramref name="index"/> hangs (the root for block 0).</summary>
    public UInt128 ParentOf(int index) => index == 0 ? Root : Chain[index - 1];

    public ContextInfo Info()
    {
        var perLayer = new long[Layers.Length];
        long blocks = 0;
        for (int i = 0; i < Layers.Length; i++)
        {
            perLayer[i] = Layers[i].Length;
            blocks += Layers[i].Blocks.Count;
        }

        return new ContextInfo(Id, Model.Name, Namespace, NumTokens, perLayer, blocks * Model.BlockBytes)
        {
            CreatedUnixMs = CreatedUnixMs,
            ExpiresAtUnixMs = ExpiresAtUnixMs,
            Pinned = Pinned,
            PinTier = PinTier,
        };
    }
}

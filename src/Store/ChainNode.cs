namespace KvDb.Store;

/// <summary>One hash-chain value in the block directory: the published block of each layer at that position.</summary>
internal sealed class ChainNode
{
    public ChainNode(int layers)
    {
        Layers = new KvBlock?[layers];
    }

    /// <summary>Published block per layer (null where that layer has none yet).</summary>
    public KvBlock?[] Layers { get; }

    /// <summary>Non-null entries of <see cref="Layers"/>; equals the layer count when every layer's block is cached.</summary>
    public int Count;
}

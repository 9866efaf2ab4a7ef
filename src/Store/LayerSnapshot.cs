using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// A pinned, consistent view of one context layer for the duration of a query: every block it lists
/// keeps its memory and its first rows unchanged until Dispose, whatever appends, rollbacks or
/// deletes happen meanwhile.
/// </summary>
public sealed class LayerSnapshot : IDisposable
{
    private readonly KvBlock[] _blocks;
    private readonly KvBlockRef[] _views;
    private int _disposed;

    internal LayerSnapshot(ModelSchema model, int layer, KvBlock[] blocks, KvBlockRef[] views, long tokens)
    {
        Model = model;
        Layer = layer;
        _blocks = blocks;
        _views = views;
        Tokens = tokens;
    }

    /// <summary>The context's model.</summary>
    public ModelSchema Model { get; }

    /// <summary>The layer index.</summary>
    public int Layer { get; }

    /// <summary>Tokens in the layer at snapshot time.</summary>
    public long Tokens { get; }

    /// <summary>Blocks in position order, as kernel views.</summary>
    public ReadOnlySpan<KvBlockRef> Blocks => _views;

    /// <summary>Releases the pins.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            foreach (KvBlock b in _blocks)
            {
                b.Release();
            }
        }
    }
}

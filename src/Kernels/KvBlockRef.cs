namespace KvDb.Kernels;

/// <summary>
/// A borrowed view of one stored block's keys and values in native memory. The owner (the store's
/// arena) guarantees the memory stays valid and unchanged in its first <see cref="Tokens"/> rows
/// while the caller holds the pin it got the view from.
/// Layout of each of keys and values: [kvHead][capacity][headDim] elements of the block dtype, so the
/// rows one KV head reads are contiguous.
/// </summary>
public readonly struct KvBlockRef
{
    /// <summary>Creates a view over a block that starts at sequence position <paramref name="start"/>.</summary>
    public KvBlockRef(nint keys, nint values, int tokens, long start)
    {
        Keys = keys;
        Values = values;
        Tokens = tokens;
        Start = start;
    }

    /// <summary>Address of the block's key region.</summary>
    public nint Keys { get; }

    /// <summary>Address of the block's value region.</summary>
    public nint Values { get; }

    /// <summary>Valid rows in the block (less than capacity only for a context's open tail block).</summary>
    public int Tokens { get; }

    /// <summary>Sequence position of the block's first row.</summary>
    public long Start { get; }
}

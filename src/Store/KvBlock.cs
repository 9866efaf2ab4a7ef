using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// One layer's K/V for up to block_size consecutive tokens of all KV heads, in an arena slot, laid out
/// as <see cref="KvBlockRef"/> describes. Rows below <see cref="Count"/> never change: writers only add
/// rows above it and then publish the new count, so readers need no lock. Reference-counted: each
/// context layer and each reader snapshot holding it counts once; the slot returns to the arena at zero.
/// </summary>
public sealed unsafe class KvBlock
{
    private readonly NativeSlabArena _arena;
    private readonly ModelSchema _model;
    private int _count;
    private int _refs = 1;

    private KvBlock(NativeSlabArena arena, ModelSchema model, nint memory)
    {
        _arena = arena;
        _model = model;
        Memory = memory;
    }

    /// <summary>Address of the key region; the value region follows it.</summary>
    public nint Memory { get; }

    /// <summary>Address of the value region.</summary>
    public nint Values => Memory + (nint)(_model.BlockBytes / 2);

    /// <summary>Published rows.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Rows the block can hold.</summary>
    public int Capacity => _model.BlockSize;

    /// <summary>True when no more rows fit.</summary>
    public bool IsFull => Count == _model.BlockSize;

    /// <summary>Allocates an empty block with one reference, or throws RESOURCE_EXHAUSTED when the CPU budget is full.</summary>
    public static KvBlock Allocate(NativeSlabArena arena, ModelSchema model)
    {
        nint memory = arena.TryAllocate(model.BlockBytes);
        if (memory == 0)
        {
            throw new KvDbException(
                KvDbErrorCode.ResourceExhausted,
                $"the CPU tier budget of {arena.BudgetBytes} bytes is full ({arena.UsedBytes} in use); delete contexts or start the server with a larger --cpu-budget");
        }

        return new KvBlock(arena, model, memory);
    }

    /// <summary>
    /// Copies <paramref name="count"/> tokens starting at token <paramref name="firstToken"/> of wire-format
    /// keys/values ([n, num_kv_heads, head_dim]) into rows Count.. and publishes them.
    /// </summary>
    public void AppendRows(ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, int firstToken, int count)
    {
        int row0 = Count;
        if (row0 + count > Capacity)
        {
            throw new InvalidOperationException("block overflow");
        }

        int rowBytes = _model.RowBytes;
        int heads = _model.NumKvHeads;
        long headStride = (long)Capacity * rowBytes;
        var kDst = new Span<byte>((void*)Memory, (int)(_model.BlockBytes / 2));
        var vDst = new Span<byte>((void*)Values, (int)(_model.BlockBytes / 2));
        for (int t = 0; t < count; t++)
        {
            for (int h = 0; h < heads; h++)
            {
                int src = ((firstToken + t) * heads + h) * rowBytes;
                int dst = (int)(h * headStride + (long)(row0 + t) * rowBytes);
                keys.Slice(src, rowBytes).CopyTo(kDst.Slice(dst, rowBytes));
                values.Slice(src, rowBytes).CopyTo(vDst.Slice(dst, rowBytes));
            }
        }

        Volatile.Write(ref _count, row0 + count);
    }

    /// <summary>A new block holding a copy of this block's first <paramref name="rows"/> rows (copy-on-write for truncation and partial prefixes).</summary>
    public KvBlock CopyPrefix(int rows)
    {
        KvBlock copy = Allocate(_arena, _model);
        int rowBytes = _model.RowBytes;
        long headStride = (long)Capacity * rowBytes;
        for (int h = 0; h < _model.NumKvHeads; h++)
        {
            long off = h * headStride;
            Buffer.MemoryCopy((void*)(Memory + (nint)off), (void*)(copy.Memory + (nint)off), headStride, (long)rows * rowBytes);
            Buffer.MemoryCopy((void*)(Values + (nint)off), (void*)(copy.Values + (nint)off), headStride, (long)rows * rowBytes);
        }

        copy._count = rows;
        return copy;
    }

    /// <summary>Copies rows [first, first+count) out in wire format ([n, num_kv_heads, head_dim]).</summary>
    public void ReadRows(int first, int count, Span<byte> keys, Span<byte> values)
    {
        int rowBytes = _model.RowBytes;
        int heads = _model.NumKvHeads;
        long headStride = (long)Capacity * rowBytes;
        var kSrc = new ReadOnlySpan<byte>((void*)Memory, (int)(_model.BlockBytes / 2));
        var vSrc = new ReadOnlySpan<byte>((void*)Values, (int)(_model.BlockBytes / 2));
        for (int t = 0; t < count; t++)
        {
            for (int h = 0; h < heads; h++)
            {
                int src = (int)(h * headStride + (long)(first + t) * rowBytes);
                int dst = (t * heads + h) * rowBytes;
                kSrc.Slice(src, rowBytes).CopyTo(keys.Slice(dst, rowBytes));
                vSrc.Slice(src, rowBytes).CopyTo(values.Slice(dst, rowBytes));
            }
        }
    }

    /// <summary>The kernel's view of this block's first <paramref name="rows"/> rows.</summary>
    public KvBlockRef View(int rows, long start) => new(Memory, Values, rows, start);

    /// <summary>Takes one more reference.</summary>
    public void AddRef()
    {
        if (Interlocked.Increment(ref _refs) <= 1)
        {
            throw new InvalidOperationException("AddRef on a freed block");
        }
    }

    /// <summary>Drops one reference; the last one returns the slot to the arena.</summary>
    public void Release()
    {
        int left = Interlocked.Decrement(ref _refs);
        if (left == 0)
        {
            _arena.Free(Memory, _model.BlockBytes);
        }
        else if (left < 0)
        {
            throw new InvalidOperationException("block released more often than referenced");
        }
    }
}

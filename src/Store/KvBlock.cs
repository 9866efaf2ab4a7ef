using System.IO.Hashing;
using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// One layer's K/V for up to block_size consecutive tokens of all KV heads, laid out as <see cref="KvBlockRef"/>
/// describes. Rows below <see cref="Count"/> never change: writers only add rows above it and then publish the
/// new count, so readers need no lock. A full block is immutable, content-addressed (<see cref="Address"/>) and
/// may be shared by many contexts; it may live in the CPU tier (an arena slot) or only on disk, and a pin
/// (<see cref="BlockManager.Pin"/>) brings it back and keeps it resident. Reference-counted: each context layer
/// and each reader snapshot counts once; at zero the block leaves every tier and the directory.
/// </summary>
public sealed unsafe class KvBlock
{
    private readonly BlockManager _manager;
    private nint _memory;
    private int _count;
    private int _refs = 1;
    private int _pins;

    internal KvBlock(BlockManager manager, ModelSchema model, int layer, nint memory)
    {
        _manager = manager;
        Model = model;
        Layer = layer;
        _memory = memory;
    }

    /// <summary>The model whose geometry the block has.</summary>
    public ModelSchema Model { get; }

    /// <summary>The layer the block belongs to.</summary>
    public int Layer { get; }

    /// <summary>Address of the key region when resident, else 0; the value region follows it.</summary>
    public nint Memory => _memory;

    /// <summary>Address of the value region.</summary>
    public nint Values => _memory + (nint)(Model.BlockBytes / 2);

    /// <summary>Published rows.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Rows the block can hold.</summary>
    public int Capacity => Model.BlockSize;

    /// <summary>True when no more rows fit.</summary>
    public bool IsFull => Count == Model.BlockSize;

    /// <summary>True while the bytes are in the CPU tier.</summary>
    public bool IsResident => _memory != 0;

    /// <summary>The content address, set once the block is full (null for a partial tail).</summary>
    public BlockAddress? Address { get; internal set; }

    /// <summary>XxHash3 of the key region followed by the value region, set once the block is full.</summary>
    public ulong Checksum { get; internal set; }

    /// <summary>True while the block is the directory's entry for its address.</summary>
    internal bool Published { get; set; }

    /// <summary>Position of the block's copy in the disk tier, or −1.</summary>
    internal long DiskAddress { get; set; } = -1;

    /// <summary>Set when the disk copy failed its checksum; the block is never served again.</summary>
    internal bool Corrupt { get; set; }

    /// <summary>
    /// Who the block's CPU-tier bytes count against when demotion weighs resident shares: the owner part of the
    /// namespace of the context that wrote it (<see cref="BlockOwner.Of"/>). A block shared by prefix keeps its writer's owner.
    /// </summary>
    internal string Owner { get; init; } = string.Empty;

    /// <summary>Logical clock of the last pin, for least-recently-used demotion.</summary>
    internal long LastUse { get; set; }

    /// <summary>The block's mirror in the GPU tier (owned and guarded by <see cref="CudaDeviceTier"/>'s lock), or null.</summary>
    internal object? DeviceMirror { get; set; }

    /// <summary>Guards residency changes and the pin count.</summary>
    internal Lock Gate { get; } = new();

    internal int Pins => _pins;

    internal int Refs => Volatile.Read(ref _refs);

    /// <summary>Allocates an empty resident block with one reference, or throws RESOURCE_EXHAUSTED when the CPU budget is full.</summary>
    public static KvBlock Allocate(BlockManager manager, ModelSchema model, int layer)
    {
        ArgumentNullException.ThrowIfNull(manager);
        return manager.Allocate(model, layer);
    }

    /// <summary>
    /// Copies <paramref name="count"/> tokens starting at token <paramref name="firstToken"/> of wire-format
    /// keys/values ([n, num_kv_heads, head_dim]) into rows Count.. and publishes them. The block must be resident (tails always are).
    /// </summary>
    public void AppendRows(ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, int firstToken, int count)
    {
        int row0 = Count;
        if (row0 + count > Capacity || _memory == 0)
        {
            throw new InvalidOperationException("block overflow or append to a non-resident block");
        }

        int rowBytes = Model.RowBytes;
        int heads = Model.NumKvHeads;
        long headStride = (long)Capacity * rowBytes;
        var kDst = new Span<byte>((void*)_memory, (int)(Model.BlockBytes / 2));
        var vDst = new Span<byte>((void*)Values, (int)(Model.BlockBytes / 2));
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

    /// <summary>Declares every row present (a full block known only by its disk copy).</summary>
    internal void MarkFullCount() => Volatile.Write(ref _count, Capacity);

    /// <summary>The whole slot (keys region then values region); the block must be resident and the caller must hold a reference.</summary>
    internal ReadOnlySpan<byte> Bytes => new((void*)_memory, (int)Model.BlockBytes);

    /// <summary>XxHash3 over <see cref="Bytes"/>: the content checksum carried by every copy of a full block.</summary>
    internal ulong ComputeChecksum() => XxHash3.HashToUInt64(Bytes);

    /// <summary>A new resident block holding a copy of this block's first <paramref name="rows"/> rows (copy-on-write for truncation and partial prefixes). The caller pins this block.</summary>
    public KvBlock CopyPrefix(int rows)
    {
        KvBlock copy = _manager.Allocate(Model, Layer, Owner);
        int rowBytes = Model.RowBytes;
        long headStride = (long)Capacity * rowBytes;
        for (int h = 0; h < Model.NumKvHeads; h++)
        {
            long off = h * headStride;
            Buffer.MemoryCopy((void*)(_memory + (nint)off), (void*)(copy._memory + (nint)off), headStride, (long)rows * rowBytes);
            Buffer.MemoryCopy((void*)(Values + (nint)off), (void*)(copy.Values + (nint)off), headStride, (long)rows * rowBytes);
        }

        copy._count = rows;
        return copy;
    }

    /// <summary>Copies rows [first, first+count) out in wire format ([n, num_kv_heads, head_dim]). The block must be pinned.</summary>
    public void ReadRows(int first, int count, Span<byte> keys, Span<byte> values)
    {
        int rowBytes = Model.RowBytes;
        int heads = Model.NumKvHeads;
        long headStride = (long)Capacity * rowBytes;
        var kSrc = new ReadOnlySpan<byte>((void*)_memory, (int)(Model.BlockBytes / 2));
        var vSrc = new ReadOnlySpan<byte>((void*)Values, (int)(Model.BlockBytes / 2));
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

    /// <summary>The kernel's view of this block's first <paramref name="rows"/> rows (valid while pinned).</summary>
    public KvBlockRef View(int rows, long start) => new(_memory, Values, rows, start);

    /// <summary>Takes one more reference.</summary>
    public void AddRef()
    {
        if (Interlocked.Increment(ref _refs) <= 1)
        {
            throw new InvalidOperationException("AddRef on a freed block");
        }
    }

    /// <summary>Takes one more reference unless the block is already freed (for lock-free directory lookups).</summary>
    internal bool TryAddRef()
    {
        int r = Volatile.Read(ref _refs);
        while (r > 0)
        {
            int seen = Interlocked.CompareExchange(ref _refs, r + 1, r);
            if (seen == r)
            {
                return true;
            }

            r = seen;
        }

        return false;
    }

    /// <summary>Drops one reference; the last one frees the block in every tier and unpublishes it.</summary>
    public void Release()
    {
        int left = Interlocked.Decrement(ref _refs);
        if (left == 0)
        {
            _manager.OnFreed(this);
        }
        else if (left < 0)
        {
            throw new InvalidOperationException("block released more often than referenced");
        }
    }

    /// <summary>Adds a pin; the caller holds <see cref="Gate"/>.</summary>
    internal void AddPin() => _pins++;

    /// <summary>Drops a pin; the caller holds <see cref="Gate"/>.</summary>
    internal void RemovePin() => _pins--;

    /// <summary>Points the block at a new CPU slot (0 = demoted); the caller holds <see cref="Gate"/>.</summary>
    internal void SetMemory(nint memory) => _memory = memory;
}

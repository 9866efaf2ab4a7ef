using System.Runtime.InteropServices;
using KvDb.Kernels;

namespace KvDb.TestKit;

/// <summary>
/// Lays wire-format K/V [tokens, numKvHeads, headDim] out the way the store does: native blocks of
/// <c>capacity</c> tokens, each with a key and a value region of [kvHead][capacity][headDim] (64-byte aligned).
/// The unused rows of a partial tail block are filled with the padding byte: by default
/// <see cref="NaNPadding"/>, so a kernel that reads past <see cref="KvBlockRef.Tokens"/> poisons its output and
/// fails the test; <see cref="ZeroPadding"/> where a case wants the zeroed tail of a fresh allocation.
/// </summary>
public sealed unsafe class NativeKvBlocks : IDisposable
{
    /// <summary>All-ones bytes: NaN in f32, f16 and bf16 alike.</summary>
    public const byte NaNPadding = 0xFF;

    /// <summary>Zero bytes: 0.0 in every dtype.</summary>
    public const byte ZeroPadding = 0x00;

    private readonly List<nint> _allocations = [];

    /// <summary>
    /// Copies <paramref name="keys"/> and <paramref name="values"/> (both [tokens, numKvHeads, headDim] of
    /// <paramref name="dtype"/>) into blocks whose first token sits at sequence position <paramref name="firstPosition"/>.
    /// </summary>
    public NativeKvBlocks(KvDType dtype, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, int numKvHeads, int headDim, int capacity, long firstPosition = 0, byte padding = NaNPadding)
    {
        int rowBytes = headDim * KvDTypeInfo.SizeOf(dtype);
        int tokens = keys.Length / (numKvHeads * rowBytes);
        if (keys.Length != (long)tokens * numKvHeads * rowBytes || values.Length != keys.Length)
        {
            throw new ArgumentException("keys and values must both be [tokens, numKvHeads, headDim] of the dtype");
        }

        long regionBytes = (long)numKvHeads * capacity * rowBytes;
        int numBlocks = (tokens + capacity - 1) / capacity;
        Blocks = new KvBlockRef[numBlocks];
        for (int b = 0; b < numBlocks; b++)
        {
            int first = b * capacity;
            int count = Math.Min(capacity, tokens - first);
            nint k = Allocate(regionBytes, padding);
            nint v = Allocate(regionBytes, padding);
            for (int t = 0; t < count; t++)
            {
                for (int h = 0; h < numKvHeads; h++)
                {
                    long wire = ((long)(first + t) * numKvHeads + h) * rowBytes;
                    long native = ((long)h * capacity + t) * rowBytes;
                    keys.Slice((int)wire, rowBytes).CopyTo(new Span<byte>((byte*)k + native, rowBytes));
                    values.Slice((int)wire, rowBytes).CopyTo(new Span<byte>((byte*)v + native, rowBytes));
                }
            }

            Blocks[b] = new KvBlockRef(k, v, count, firstPosition + first);
        }
    }

    /// <summary>The same, with the dtype, heads, dimension and block capacity of <paramref name="geometry"/>, starting at position 0.</summary>
    public NativeKvBlocks(in AttentionGeometry geometry, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, byte padding = NaNPadding)
        : this(geometry.DType, keys, values, geometry.NumKvHeads, geometry.HeadDim, geometry.BlockCapacity, 0, padding)
    {
    }

    /// <summary>The blocks in sequence order.</summary>
    public KvBlockRef[] Blocks { get; }

    /// <summary>Frees every block.</summary>
    public void Dispose()
    {
        foreach (nint p in _allocations)
        {
            NativeMemory.AlignedFree((void*)p);
        }

        _allocations.Clear();
    }

    private nint Allocate(long bytes, byte padding)
    {
        var p = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        _allocations.Add(p);
        new Span<byte>((void*)p, checked((int)bytes)).Fill(padding);
        return p;
    }
}

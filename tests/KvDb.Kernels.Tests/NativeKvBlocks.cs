using System.Runtime.InteropServices;

namespace KvDb.Kernels.Tests;

/// <summary>
/// Lays wire-format K/V [tokens, numKvHeads, headDim] out the way the store does: native blocks of
/// <c>capacity</c> tokens, each with a key and a value region of [kvHead][capacity][headDim]. Unused rows
/// of a partial tail block are filled with NaN bit patterns, so a kernel that reads past
/// <see cref="KvBlockRef.Tokens"/> poisons its output and fails the test.
/// </summary>
internal sealed unsafe class NativeKvBlocks : IDisposable
{
    private readonly List<nint> _allocations = [];

    public NativeKvBlocks(KvDType dtype, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, int numKvHeads, int headDim, int capacity, long firstPosition = 0)
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
            nint k = Allocate(regionBytes);
            nint v = Allocate(regionBytes);
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

    public KvBlockRef[] Blocks { get; }

    public void Dispose()
    {
        foreach (nint p in _allocations)
        {
            NativeMemory.AlignedFree((void*)p);
        }

        _allocations.Clear();
    }

    private nint Allocate(long bytes)
    {
        var p = (nint)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        _allocations.Add(p);

        // All-ones is NaN in f32, f16 and bf16 alike.
        new Span<byte>((void*)p, checked((int)bytes)).Fill(0xFF);
        return p;
    }
}

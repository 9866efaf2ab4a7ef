using System.Runtime.InteropServices;
using KvDb.Kernels;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// A synthetic layer context in native blocks laid out as the store keeps them (per block a key region and a
/// value region, each [kvHead][capacity][headDim]). It is generated block by block straight into native
/// memory, so a 128K-token context never exists as f32 in the managed heap.
/// </summary>
internal sealed unsafe class NativeContext : IDisposable
{
    private byte* _slab;

    public NativeContext(SyntheticWorkload workload, AttentionGeometry geometry)
    {
        Geometry = geometry;
        long tokens = workload.Options.Tokens;
        int cap = geometry.BlockCapacity;
        int numBlocks = checked((int)((tokens + cap - 1) / cap));
        long regionBytes = geometry.RegionBytes;
        SlabBytes = numBlocks * 2 * regionBytes;
        _slab = (byte*)NativeMemory.AlignedAlloc((nuint)SlabBytes, 4096);
        Blocks = new KvBlockRef[numBlocks];

        int rowBytes = geometry.RowBytes;
        int hkv = geometry.NumKvHeads;
        int floatsPerBlock = cap * hkv * geometry.HeadDim;
        KvDType dtype = geometry.DType;
        byte* slab = _slab;
        KvBlockRef[] blocks = Blocks;
        Parallel.For(
            0,
            numBlocks,
            () => (new float[floatsPerBlock], new byte[(long)floatsPerBlock * KvDTypeInfo.SizeOf(dtype)]),
            (b, _, scratch) =>
            {
                long start = (long)b * cap;
                int count = (int)Math.Min(cap, tokens - start);
                byte* keys = slab + (b * 2L * regionBytes);
                byte* values = keys + regionBytes;
                workload.FillKeys(start, count, scratch.Item1);
                Scatter(dtype, scratch.Item1, scratch.Item2, count, hkv, rowBytes, cap, keys);
                workload.FillValues(start, count, scratch.Item1);
                Scatter(dtype, scratch.Item1, scratch.Item2, count, hkv, rowBytes, cap, values);
                blocks[b] = new KvBlockRef((nint)keys, (nint)values, count, start);
                return scratch;
            },
            _ => { });
    }

    public AttentionGeometry Geometry { get; }

    public KvBlockRef[] Blocks { get; }

    /// <summary>Bytes of native memory holding the blocks, capacity padding of the tail block included.</summary>
    public long SlabBytes { get; }

    public void Dispose()
    {
        if (_slab != null)
        {
            NativeMemory.AlignedFree(_slab);
            _slab = null;
        }
    }

    /// <summary>Encodes wire-order rows [count, kvHead, dim] and moves each into its [kvHead][capacity][dim] slot.</summary>
    private static void Scatter(KvDType dtype, float[] rows, byte[] encoded, int count, int hkv, int rowBytes, int cap, byte* region)
    {
        int floats = count * hkv * (rowBytes / KvDTypeInfo.SizeOf(dtype));
        ElementConversion.FromSingle(dtype, rows.AsSpan(0, floats), encoded.AsSpan(0, floats * KvDTypeInfo.SizeOf(dtype)));
        for (int t = 0; t < count; t++)
        {
            for (int h = 0; h < hkv; h++)
            {
                encoded.AsSpan(((t * hkv) + h) * rowBytes, rowBytes).CopyTo(new Span<byte>(region + (((long)h * cap) + t) * rowBytes, rowBytes));
            }
        }
    }
}

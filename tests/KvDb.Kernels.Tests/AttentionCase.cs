using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Kernels.Tests;

/// <summary>
/// One synthetic layer context in a given dtype: wire bytes for the kernel, the same bytes decoded to f32
/// for the reference, and decode queries. Keys can be scaled before encoding to push scores to extremes.
/// </summary>
internal sealed class AttentionCase
{
    public AttentionCase(KvDType dtype, int tokens, int numKvHeads, int group, int headDim, int numQueries, float keyScale = 1f, ulong seed = 7)
    {
        DType = dtype;
        Tokens = tokens;
        NumKvHeads = numKvHeads;
        NumQueryHeads = numKvHeads * group;
        HeadDim = headDim;
        NumQueries = numQueries;
        Scale = 1f / MathF.Sqrt(headDim);
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions
        {
            Tokens = tokens,
            NumKvHeads = numKvHeads,
            NumQueryHeads = NumQueryHeads,
            HeadDim = headDim,
            Seed = seed,
        });

        var keys = new float[tokens * numKvHeads * headDim];
        workload.FillKeys(0, tokens, keys);
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] *= keyScale;
        }

        KeyBytes = ElementConversion.FromSingle(dtype, keys);
        ValueBytes = workload.ValueBytes(dtype, 0, tokens);
        Keys = WireDecoder.Decode(dtype, KeyBytes);
        Values = WireDecoder.Decode(dtype, ValueBytes);
        Queries = workload.Queries(numQueries, seed + 1);
    }

    public KvDType DType { get; }

    public int Tokens { get; }

    public int NumKvHeads { get; }

    public int NumQueryHeads { get; }

    public int HeadDim { get; }

    public int NumQueries { get; }

    public float Scale { get; }

    public byte[] KeyBytes { get; }

    public byte[] ValueBytes { get; }

    /// <summary>Keys as the kernel sees them: the dtype-rounded wire values widened to f32.</summary>
    public float[] Keys { get; }

    public float[] Values { get; }

    public float[] Queries { get; }

    public AttentionGeometry Geometry(int capacity) => new(NumQueryHeads, NumKvHeads, HeadDim, capacity, DType, Scale);

    /// <summary>Wire rows [first, first + count) laid out as native blocks starting at sequence position first.</summary>
    public NativeKvBlocks Layout(int capacity, int first = 0, int count = -1)
    {
        if (count < 0)
        {
            count = Tokens - first;
        }

        int rowBytes = NumKvHeads * HeadDim * KvDTypeInfo.SizeOf(DType);
        return new NativeKvBlocks(
            DType,
            KeyBytes.AsSpan(first * rowBytes, count * rowBytes),
            ValueBytes.AsSpan(first * rowBytes, count * rowBytes),
            NumKvHeads,
            HeadDim,
            capacity,
            first);
    }

    /// <summary>
    /// Runs the kernel; <paramref name="allowFused"/> false pins the portable path the kernel takes without
    /// AVX-512, <paramref name="chunkTokens"/> &gt; 0 forces the token-range split at that chunk length.
    /// </summary>
    public KernelResult Run(int capacity, long excludeStart = 0, long excludeEnd = 0, bool allowFused = true, int chunkTokens = 0)
    {
        using NativeKvBlocks blocks = Layout(capacity);
        return Run(blocks.Blocks, capacity, excludeStart, excludeEnd, allowFused, chunkTokens);
    }

    public KernelResult Run(KvBlockRef[] blocks, int capacity, long excludeStart = 0, long excludeEnd = 0, bool allowFused = true, int chunkTokens = 0)
    {
        var output = new float[Queries.Length];
        var lse = new float[NumQueries * NumQueryHeads];
        AttentionCounters counters = allowFused && chunkTokens == 0
            ? ExactAttentionKernel.Run(Geometry(capacity), blocks, Queries, NumQueries, excludeStart, excludeEnd, output, lse)
            : ExactAttentionKernel.Run(Geometry(capacity), blocks, Queries, NumQueries, excludeStart, excludeEnd, output, lse, allowFused, chunkTokens);
        return new KernelResult(output, lse, counters);
    }

    /// <summary>
    /// The f64 reference (<see cref="ReferenceAttention"/>, which shares nothing with the kernels) over the
    /// dtype-rounded keys and values, skipping positions in [<paramref name="excludeStart"/>, <paramref name="excludeEnd"/>).
    /// </summary>
    public (double[] Output, double[] Lse) Reference(long excludeStart = 0, long excludeEnd = 0) =>
        ReferenceAttention.Compute(Keys, Values, Queries, NumQueries, NumQueryHeads, NumKvHeads, HeadDim, Scale, excludeStart, excludeEnd);
}

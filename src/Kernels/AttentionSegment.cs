using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// Folds one segment of consecutive rows of one KV head into the online-softmax state of the query rows it
/// serves: through the fused loops where they apply (<see cref="FusedAttentionSegment"/> with AVX-512,
/// <see cref="FusedAttentionSegment256"/> with AVX2 + FMA), otherwise by widening the segment to f32 once and
/// feeding TensorPrimitives row by row.
/// Unsafe: every pointer addresses the caller's pinned blocks or scratch, valid for the call; K, V and the
/// next segment's K hold <paramref name="count"/> rows of <see cref="AttentionGeometry.RowBytes"/>.
/// </summary>
internal static unsafe class AttentionSegment
{
    /// <summary>
    /// True when this machine and head dim can use fused loops of either width. Both widths walk the head in
    /// the same 32-element chunks and element order, so <see cref="StoredIndex"/> need not know which one runs.
    /// </summary>
    public static bool FusedSupported(int headDim) =>
        headDim % FusedAttentionSegment.Chunk == 0 && (Vector512.IsHardwareAccelerated || FusedAttentionSegment256.IsSupported);

    /// <summary>
    /// Where query rows and accumulators keep logical element <paramref name="index"/>: the fused bf16 loops
    /// widen in a permuted order (see <see cref="BFloat16RowFormat"/>), every other path in place.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int StoredIndex(in AttentionGeometry geometry, bool fused, int index) =>
        fused && geometry.DType == KvDType.BF16 ? BFloat16RowFormat.StoredIndex(index) : index;

    /// <summary>
    /// Folds <paramref name="count"/> rows at <paramref name="keys"/>/<paramref name="values"/> into the
    /// state (q and acc [rows, d], max and sum [rows]) of <paramref name="rows"/> query rows. scores holds
    /// [rows, capacity]; kBuf and vBuf [capacity, d] (used only when rows must be widened first).
    /// <paramref name="nextKeys"/> and <paramref name="nextValues"/>, when not zero, are where the caller's next
    /// segment starts, prefetched while this one computes (the Vector512 loops take only the keys).
    /// </summary>
    public static void Fold(in AttentionGeometry geometry, bool fused, nint keys, nint values, nint nextKeys, nint nextValues, int count, int rows, float* q, float* acc, float* max, float* sum, float* scores, float* kBuf, float* vBuf)
    {
        int d = geometry.HeadDim;
        if (!fused)
        {
            Portable(geometry, keys, values, count, rows, q, acc, max, sum, scores, kBuf, vBuf);
            return;
        }

        switch (geometry.DType)
        {
            case KvDType.BF16:
                Fused<BFloat16RowFormat>((byte*)keys, (byte*)values, (byte*)nextKeys, (byte*)nextValues, count, d, rows, q, acc, max, sum, scores);
                break;
            case KvDType.F32:
                Fused<F32RowFormat>((byte*)keys, (byte*)values, (byte*)nextKeys, (byte*)nextValues, count, d, rows, q, acc, max, sum, scores);
                break;
            default:
                // No fused path widens f16 in registers; widening the segment once still feeds all rows.
                // The next segment is not prefetched: the fused loops would size its rows as f32.
                float* k = Widen(geometry.DType, keys, count * d, kBuf);
                float* v = Widen(geometry.DType, values, count * d, vBuf);
                Fused<F32RowFormat>((byte*)k, (byte*)v, null, null, count, d, rows, q, acc, max, sum, scores);
                break;
        }
    }

    /// <summary>The widest fused loops this machine accelerates; <see cref="FusedSupported"/> has vouched for one of them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fused<TFormat>(byte* keys, byte* values, byte* nextKeys, byte* nextValues, int count, int d, int rows, float* q, float* acc, float* max, float* sum, float* scores)
        where TFormat : struct, IVectorRowFormat
    {
        if (Vector512.IsHardwareAccelerated)
        {
            FusedAttentionSegment.Run<TFormat>(keys, values, nextKeys, count, d, rows, q, acc, max, sum, scores, count);
        }
        else
        {
            FusedAttentionSegment256.Run<TFormat>(keys, values, nextKeys, nextValues, count, d, rows, q, acc, max, sum, scores, count);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Portable(in AttentionGeometry geometry, nint keys, nint values, int count, int rows, float* q, float* acc, float* max, float* sum, float* scores, float* kBuf, float* vBuf)
    {
        int d = geometry.HeadDim;
        int elems = count * d;
        float* k = Widen(geometry.DType, keys, elems, kBuf);

        for (int r = 0; r < rows; r++)
        {
            var qr = new ReadOnlySpan<float>(q + ((long)r * d), d);
            float* sr = scores + ((long)r * count);
            for (int j = 0; j < count; j++)
            {
                sr[j] = TensorPrimitives.Dot(qr, new ReadOnlySpan<float>(k + ((long)j * d), d));
            }

            var s = new Span<float>(sr, count);
            float blockMax = TensorPrimitives.Max(s);
            float newMax = OnlineSoftmax.Raise(max, sum, acc, r, d, blockMax);

            TensorPrimitives.Subtract(s, newMax, s);
            TensorPrimitives.Exp(s, s);
            sum[r] += TensorPrimitives.Sum(s);
        }

        float* v = Widen(geometry.DType, values, elems, vBuf);
        for (int j = 0; j < count; j++)
        {
            var vj = new ReadOnlySpan<float>(v + ((long)j * d), d);
            for (int r = 0; r < rows; r++)
            {
                var ar = new Span<float>(acc + ((long)r * d), d);
                TensorPrimitives.MultiplyAdd(vj, scores[((long)r * count) + j], ar, ar);
            }
        }
    }

    private static float* Widen(KvDType dtype, nint source, int elems, float* buffer)
    {
        if (dtype == KvDType.F32)
        {
            return (float*)source;
        }

        ElementConversion.ToSingle(dtype, new ReadOnlySpan<byte>((void*)source, elems * KvDTypeInfo.SizeOf(dtype)), new Span<float>(buffer, elems));
        return buffer;
    }
}

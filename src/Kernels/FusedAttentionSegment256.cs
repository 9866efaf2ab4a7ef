using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvDb.Kernels;

/// <summary>
/// The AVX2 + FMA (Vector256) counterpart of <see cref="FusedAttentionSegment"/>, for machines without AVX-512:
/// the same segment contract, the same 32-element chunks and element order (see
/// <see cref="IVectorRowFormat.Load16"/>), so queries and outputs use the same <see cref="IVectorRowFormat.StoredIndex"/>.
/// With only sixteen 256-bit registers the blocking is narrower than the Vector512 loops: the K pass takes four
/// query rows against two key rows per step (eight accumulators; each query vector loaded feeds two FMAs, each
/// widened key vector four), and the V pass keeps four rows' accumulators for sixteen elements of the head at a
/// time (each broadcast weight feeds two FMAs, each widened V vector four).
/// Query rows, accumulators and scores are f32 in the format's element order.
/// </summary>
internal static unsafe class FusedAttentionSegment256
{
    /// <summary>Elements per chunk: the same as the Vector512 loops, so both share one element order.</summary>
    public const int Chunk = FusedAttentionSegment.Chunk;

    private const int Width = 8;

    /// <summary>True when this machine has the AVX2 and FMA instructions the loops are written for.</summary>
    public static bool IsSupported => Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// Folds <paramref name="count"/> rows at <paramref name="keys"/>/<paramref name="values"/> (stride
    /// headDim elements) into the online-softmax state of <paramref name="rows"/> query rows: q and acc are
    /// [rows, headDim], max and sum [rows], scores [rows, scoreStride] scratch. <paramref name="nextKeys"/>,
    /// and <paramref name="nextValues"/>, when not null, are where the caller's next segment starts: they are
    /// prefetched while this one computes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TFormat>(byte* keys, byte* values, byte* nextKeys, byte* nextValues, int count, int headDim, int rows, float* q, float* acc, float* max, float* sum, float* scores, int scoreStride)
        where TFormat : struct, IVectorRowFormat
    {
        int rowBytes = headDim * TFormat.ElementSize;

        // A KV head's rows in a block are a short run followed by a jump, too short for the hardware prefetcher,
        // so the first K pass trickles out prefetches, row for row, of the next segment's K and V: a whole
        // segment ahead, which keeps memory busy through this segment's softmax and V pass as well (the scattered
        // runs of a selection gained most). Without a next segment it prefetches this segment's V, as the Vector512
        // loops do.
        byte* prefetchK = nextKeys != null ? nextKeys : values;
        byte* prefetchV = nextValues != null ? nextValues : values;
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            float* s = scores + ((long)r * scoreStride);
            Vector128<float> blockMax = Scores4<TFormat>(keys, count, rowBytes, headDim, q + ((long)r * headDim), s, scoreStride, prefetchV, prefetchK);
            Softmax4(s, scoreStride, count, acc + ((long)r * headDim), headDim, max + r, sum + r, blockMax);
            prefetchV = prefetchK = null;
        }

        for (; r < rows; r++)
        {
            float* s = scores + ((long)r * scoreStride);
            Scores1<TFormat>(keys, count, rowBytes, headDim, q + ((long)r * headDim), s, prefetchV, prefetchK);
            Softmax(s, count, acc + ((long)r * headDim), headDim, ref max[r], ref sum[r]);
            prefetchV = prefetchK = null;
        }

        for (r = 0; r + 4 <= rows; r += 4)
        {
            Accumulate4<TFormat>(values, count, rowBytes, headDim, scores + ((long)r * scoreStride), scoreStride, acc + ((long)r * headDim));
        }

        for (; r < rows; r++)
        {
            Accumulate1<TFormat>(values, count, rowBytes, headDim, scores + ((long)r * scoreStride), acc + ((long)r * headDim));
        }
    }

    /// <summary>Softmax for four rows whose block maxima <see cref="Scores4"/> found: the four exp chains interleave.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax4(float* s0, int scoreStride, int count, float* acc0, int headDim, float* max, float* sum, Vector128<float> blockMax)
    {
        float m0 = Raise(acc0, headDim, ref max[0], ref sum[0], blockMax.GetElement(0));
        float m1 = Raise(acc0 + headDim, headDim, ref max[1], ref sum[1], blockMax.GetElement(1));
        float m2 = Raise(acc0 + (2 * headDim), headDim, ref max[2], ref sum[2], blockMax.GetElement(2));
        float m3 = Raise(acc0 + (3 * headDim), headDim, ref max[3], ref sum[3], blockMax.GetElement(3));

        float* s1 = s0 + scoreStride;
        float* s2 = s1 + scoreStride;
        float* s3 = s2 + scoreStride;
        var shift0 = Vector256.Create(m0);
        var shift1 = Vector256.Create(m1);
        var shift2 = Vector256.Create(m2);
        var shift3 = Vector256.Create(m3);
        Vector256<float> t0 = Vector256<float>.Zero;
        Vector256<float> t1 = Vector256<float>.Zero;
        Vector256<float> t2 = Vector256<float>.Zero;
        Vector256<float> t3 = Vector256<float>.Zero;
        int i = 0;
        for (; i <= count - Width; i += Width)
        {
            Vector256<float> e0 = VectorExp.Exp(Vector256.Load(s0 + i) - shift0);
            Vector256<float> e1 = VectorExp.Exp(Vector256.Load(s1 + i) - shift1);
            Vector256<float> e2 = VectorExp.Exp(Vector256.Load(s2 + i) - shift2);
            Vector256<float> e3 = VectorExp.Exp(Vector256.Load(s3 + i) - shift3);
            e0.Store(s0 + i);
            e1.Store(s1 + i);
            e2.Store(s2 + i);
            e3.Store(s3 + i);
            t0 += e0;
            t1 += e1;
            t2 += e2;
            t3 += e3;
        }

        Vector128<float> totals = Sum4(t0, t1, t2, t3);
        sum[0] += totals.GetElement(0) + ExpTail(s0, i, count, m0);
        sum[1] += totals.GetElement(1) + ExpTail(s1, i, count, m1);
        sum[2] += totals.GetElement(2) + ExpTail(s2, i, count, m2);
        sum[3] += totals.GetElement(3) + ExpTail(s3, i, count, m3);
    }

    /// <summary>Raises a row's running max to at least <paramref name="blockMax"/>, rescaling its state, and returns the new max.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Raise(float* acc, int headDim, ref float max, ref float sum, float blockMax)
    {
        float newMax = Math.Max(max, blockMax);
        if (newMax > max)
        {
            // exp(−∞) = 0 also clears the state the first time a row sees data.
            float factor = MathF.Exp(max - newMax);
            sum *= factor;
            var f = Vector256.Create(factor);
            for (int o = 0; o < headDim; o += Width)
            {
                (Vector256.Load(acc + o) * f).Store(acc + o);
            }

            max = newMax;
        }

        return newMax;
    }

    /// <summary>exp(s[i] − shift) in place for the scores past the last whole vector; returns their sum.</summary>
    private static float ExpTail(float* s, int i, int count, float shift)
    {
        float total = 0;
        for (; i < count; i++)
        {
            float e = MathF.Exp(s[i] - shift);
            s[i] = e;
            total += e;
        }

        return total;
    }

    /// <summary>Turns one row's scores into exp(score − running max) in place, rescaling its state when the max rises.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax(float* s, int count, float* acc, int headDim, ref float max, ref float sum)
    {
        int i = 0;
        var vmax = Vector256.Create(float.NegativeInfinity);
        for (; i <= count - Width; i += Width)
        {
            vmax = Vector256.Max(vmax, Vector256.Load(s + i));
        }

        Vector128<float> m4 = Vector128.Max(vmax.GetLower(), vmax.GetUpper());
        float blockMax = Math.Max(Math.Max(m4.GetElement(0), m4.GetElement(1)), Math.Max(m4.GetElement(2), m4.GetElement(3)));
        for (; i < count; i++)
        {
            blockMax = Math.Max(blockMax, s[i]);
        }

        float newMax = Raise(acc, headDim, ref max, ref sum, blockMax);
        var shift = Vector256.Create(newMax);
        Vector256<float> total = Vector256<float>.Zero;
        for (i = 0; i <= count - Width; i += Width)
        {
            Vector256<float> e = VectorExp.Exp(Vector256.Load(s + i) - shift);
            e.Store(s + i);
            total += e;
        }

        sum += Vector256.Sum(total) + ExpTail(s, i, count, newMax);
    }

    /// <summary>Prefetches into L2 only, for the reason <see cref="FusedAttentionSegment"/> gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchRow(byte* row, int rowBytes)
    {
        for (int o = 0; o < rowBytes; o += 64)
        {
            Sse.Prefetch1(row + o);
        }
    }

    /// <summary>Sums of four vectors at once: a tree of horizontal adds shares the shuffles of four reductions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Sum4(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        Vector256<float> z = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        return z.GetLower() + z.GetUpper();
    }

    /// <summary>
    /// Sums of eight vectors x[r, k] (four query rows r, two key rows k) into one vector [x00, x01, x10, x11,
    /// x20, x21, x30, x31]: two levels of horizontal adds per 128-bit lane, then the two lanes added.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sum8(
        Vector256<float> x00, Vector256<float> x01, Vector256<float> x10, Vector256<float> x11,
        Vector256<float> x20, Vector256<float> x21, Vector256<float> x30, Vector256<float> x31)
    {
        Vector256<float> g0 = Avx.HorizontalAdd(Avx.HorizontalAdd(x00, x01), Avx.HorizontalAdd(x10, x11));
        Vector256<float> g1 = Avx.HorizontalAdd(Avx.HorizontalAdd(x20, x21), Avx.HorizontalAdd(x30, x31));
        return Avx.Permute2x128(g0, g1, 0x20) + Avx.Permute2x128(g0, g1, 0x31);
    }

    /// <summary>
    /// Scores of four query rows against the segment's keys, two key rows at a time, sixteen elements (one
    /// <see cref="IVectorRowFormat.Load16"/>) per inner step; the eight dot products of a step reduce together.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Scores4<TFormat>(byte* keys, int count, int rowBytes, int headDim, float* q0, float* s0, int scoreStride, byte* prefetchA, byte* prefetchB)
        where TFormat : struct, IVectorRowFormat
    {
        float* q1 = q0 + headDim;
        float* q2 = q1 + headDim;
        float* q3 = q2 + headDim;
        float* s1 = s0 + scoreStride;
        float* s2 = s1 + scoreStride;
        float* s3 = s2 + scoreStride;
        int chunkBytes = Chunk * TFormat.ElementSize;
        var best = Vector256.Create(float.NegativeInfinity);
        int j = 0;
        for (; j + 2 <= count; j += 2)
        {
            if (prefetchA != null)
            {
                PrefetchRow(prefetchA + ((long)j * rowBytes), 2 * rowBytes);
                PrefetchRow(prefetchB + ((long)j * rowBytes), 2 * rowBytes);
            }

            byte* k = keys + ((long)j * rowBytes);
            Vector256<float> a00 = Vector256<float>.Zero, a01 = Vector256<float>.Zero;
            Vector256<float> a10 = Vector256<float>.Zero, a11 = Vector256<float>.Zero;
            Vector256<float> a20 = Vector256<float>.Zero, a21 = Vector256<float>.Zero;
            Vector256<float> a30 = Vector256<float>.Zero, a31 = Vector256<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                for (int h = 0; h < 2; h++)
                {
                    TFormat.Load16(k, h, out Vector256<float> k0a, out Vector256<float> k0b);
                    TFormat.Load16(k + rowBytes, h, out Vector256<float> k1a, out Vector256<float> k1b);
                    int oa = o + (8 * h);
                    int ob = oa + 16;

                    Vector256<float> qa = Vector256.Load(q0 + oa);
                    Vector256<float> qb = Vector256.Load(q0 + ob);
                    a00 = Vector256.FusedMultiplyAdd(qa, k0a, a00);
                    a01 = Vector256.FusedMultiplyAdd(qa, k1a, a01);
                    a00 = Vector256.FusedMultiplyAdd(qb, k0b, a00);
                    a01 = Vector256.FusedMultiplyAdd(qb, k1b, a01);
                    qa = Vector256.Load(q1 + oa);
                    qb = Vector256.Load(q1 + ob);
                    a10 = Vector256.FusedMultiplyAdd(qa, k0a, a10);
                    a11 = Vector256.FusedMultiplyAdd(qa, k1a, a11);
                    a10 = Vector256.FusedMultiplyAdd(qb, k0b, a10);
                    a11 = Vector256.FusedMultiplyAdd(qb, k1b, a11);
                    qa = Vector256.Load(q2 + oa);
                    qb = Vector256.Load(q2 + ob);
                    a20 = Vector256.FusedMultiplyAdd(qa, k0a, a20);
                    a21 = Vector256.FusedMultiplyAdd(qa, k1a, a21);
                    a20 = Vector256.FusedMultiplyAdd(qb, k0b, a20);
                    a21 = Vector256.FusedMultiplyAdd(qb, k1b, a21);
                    qa = Vector256.Load(q3 + oa);
                    qb = Vector256.Load(q3 + ob);
                    a30 = Vector256.FusedMultiplyAdd(qa, k0a, a30);
                    a31 = Vector256.FusedMultiplyAdd(qa, k1a, a31);
                    a30 = Vector256.FusedMultiplyAdd(qb, k0b, a30);
                    a31 = Vector256.FusedMultiplyAdd(qb, k1b, a31);
                }
            }

            // dots = [r0k0, r0k1, r1k0, r1k1, ...]: each row's pair of scores is one 64-bit store.
            Vector256<float> dots = Sum8(a00, a01, a10, a11, a20, a21, a30, a31);
            Vector128<float> lo = dots.GetLower();
            Vector128<float> hi = dots.GetUpper();
            Sse.StoreLow(s0 + j, lo);
            Sse.StoreHigh(s1 + j, lo);
            Sse.StoreLow(s2 + j, hi);
            Sse.StoreHigh(s3 + j, hi);
            best = Vector256.Max(best, dots);
        }

        // best holds each row's maxima over the two key positions side by side: fold the pairs, then pick one of each.
        best = Vector256.Max(best, Avx.Permute(best, 0xB1));
        Vector128<float> blockMax = Sse.Shuffle(best.GetLower(), best.GetUpper(), 0x88);

        for (; j < count; j++)
        {
            if (prefetchA != null)
            {
                PrefetchRow(prefetchA + ((long)j * rowBytes), rowBytes);
                PrefetchRow(prefetchB + ((long)j * rowBytes), rowBytes);
            }

            byte* k = keys + ((long)j * rowBytes);
            Vector256<float> a0 = Vector256<float>.Zero;
            Vector256<float> a1 = Vector256<float>.Zero;
            Vector256<float> a2 = Vector256<float>.Zero;
            Vector256<float> a3 = Vector256<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                for (int h = 0; h < 2; h++)
                {
                    TFormat.Load16(k, h, out Vector256<float> ka, out Vector256<float> kb);
                    int oa = o + (8 * h);
                    int ob = oa + 16;
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(q0 + ob), kb, Vector256.FusedMultiplyAdd(Vector256.Load(q0 + oa), ka, a0));
                    a1 = Vector256.FusedMultiplyAdd(Vector256.Load(q1 + ob), kb, Vector256.FusedMultiplyAdd(Vector256.Load(q1 + oa), ka, a1));
                    a2 = Vector256.FusedMultiplyAdd(Vector256.Load(q2 + ob), kb, Vector256.FusedMultiplyAdd(Vector256.Load(q2 + oa), ka, a2));
                    a3 = Vector256.FusedMultiplyAdd(Vector256.Load(q3 + ob), kb, Vector256.FusedMultiplyAdd(Vector256.Load(q3 + oa), ka, a3));
                }
            }

            Vector128<float> dots = Sum4(a0, a1, a2, a3);
            s0[j] = dots.GetElement(0);
            s1[j] = dots.GetElement(1);
            s2[j] = dots.GetElement(2);
            s3[j] = dots.GetElement(3);
            blockMax = Vector128.Max(blockMax, dots);
        }

        return blockMax;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores1<TFormat>(byte* keys, int count, int rowBytes, int headDim, float* q0, float* s0, byte* prefetchA, byte* prefetchB)
        where TFormat : struct, IVectorRowFormat
    {
        int chunkBytes = Chunk * TFormat.ElementSize;
        for (int j = 0; j < count; j++)
        {
            if (prefetchA != null)
            {
                PrefetchRow(prefetchA + ((long)j * rowBytes), rowBytes);
                PrefetchRow(prefetchB + ((long)j * rowBytes), rowBytes);
            }

            byte* k = keys + ((long)j * rowBytes);
            Vector256<float> a0 = Vector256<float>.Zero;
            Vector256<float> b0 = Vector256<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                for (int h = 0; h < 2; h++)
                {
                    TFormat.Load16(k, h, out Vector256<float> ka, out Vector256<float> kb);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(q0 + o + (8 * h)), ka, a0);
                    b0 = Vector256.FusedMultiplyAdd(Vector256.Load(q0 + o + 16 + (8 * h)), kb, b0);
                }
            }

            s0[j] = Vector256.Sum(a0 + b0);
        }
    }

    /// <summary>
    /// The V pass for four rows, sixteen head elements (one Load16) at a time: eight accumulators stay in
    /// registers across the whole segment, whose V rows stay in L1/L2 between the passes over the head.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate4<TFormat>(byte* values, int count, int rowBytes, int headDim, float* p0, int pStride, float* acc0)
        where TFormat : struct, IVectorRowFormat
    {
        float* p1 = p0 + pStride;
        float* p2 = p1 + pStride;
        float* p3 = p2 + pStride;
        float* acc1 = acc0 + headDim;
        float* acc2 = acc1 + headDim;
        float* acc3 = acc2 + headDim;
        int chunkBytes = Chunk * TFormat.ElementSize;
        for (int o = 0; o < headDim; o += Chunk)
        {
            byte* chunk = values + ((long)(o / Chunk) * chunkBytes);
            for (int h = 0; h < 2; h++)
            {
                int oa = o + (8 * h);
                int ob = oa + 16;
                Vector256<float> a0 = Vector256.Load(acc0 + oa);
                Vector256<float> b0 = Vector256.Load(acc0 + ob);
                Vector256<float> a1 = Vector256.Load(acc1 + oa);
                Vector256<float> b1 = Vector256.Load(acc1 + ob);
                Vector256<float> a2 = Vector256.Load(acc2 + oa);
                Vector256<float> b2 = Vector256.Load(acc2 + ob);
                Vector256<float> a3 = Vector256.Load(acc3 + oa);
                Vector256<float> b3 = Vector256.Load(acc3 + ob);
                byte* v = chunk;
                for (int j = 0; j < count; j++, v += rowBytes)
                {
                    TFormat.Load16(v, h, out Vector256<float> va, out Vector256<float> vb);
                    var w = Vector256.Create(p0[j]);
                    a0 = Vector256.FusedMultiplyAdd(w, va, a0);
                    b0 = Vector256.FusedMultiplyAdd(w, vb, b0);
                    w = Vector256.Create(p1[j]);
                    a1 = Vector256.FusedMultiplyAdd(w, va, a1);
                    b1 = Vector256.FusedMultiplyAdd(w, vb, b1);
                    w = Vector256.Create(p2[j]);
                    a2 = Vector256.FusedMultiplyAdd(w, va, a2);
                    b2 = Vector256.FusedMultiplyAdd(w, vb, b2);
                    w = Vector256.Create(p3[j]);
                    a3 = Vector256.FusedMultiplyAdd(w, va, a3);
                    b3 = Vector256.FusedMultiplyAdd(w, vb, b3);
                }

                a0.Store(acc0 + oa);
                b0.Store(acc0 + ob);
                a1.Store(acc1 + oa);
                b1.Store(acc1 + ob);
                a2.Store(acc2 + oa);
                b2.Store(acc2 + ob);
                a3.Store(acc3 + oa);
                b3.Store(acc3 + ob);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate1<TFormat>(byte* values, int count, int rowBytes, int headDim, float* p0, float* acc0)
        where TFormat : struct, IVectorRowFormat
    {
        int chunkBytes = Chunk * TFormat.ElementSize;
        for (int o = 0; o < headDim; o += Chunk)
        {
            byte* chunk = values + ((long)(o / Chunk) * chunkBytes);
            for (int h = 0; h < 2; h++)
            {
                int oa = o + (8 * h);
                int ob = oa + 16;
                Vector256<float> a0 = Vector256.Load(acc0 + oa);
                Vector256<float> b0 = Vector256.Load(acc0 + ob);
                byte* v = chunk;
                for (int j = 0; j < count; j++, v += rowBytes)
                {
                    TFormat.Load16(v, h, out Vector256<float> va, out Vector256<float> vb);
                    var w = Vector256.Create(p0[j]);
                    a0 = Vector256.FusedMultiplyAdd(w, va, a0);
                    b0 = Vector256.FusedMultiplyAdd(w, vb, b0);
                }

                a0.Store(acc0 + oa);
                b0.Store(acc0 + ob);
            }
        }
    }
}

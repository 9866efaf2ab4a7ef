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
/// time (each broadcast weight feeds two FMAs, each widened V vector four). A group of four query rows keeps its
/// scores interleaved, [token][4]: a K step stores its eight dot products with one store, the softmax runs on all
/// four rows at once, and the V pass finds a token's four weights side by side.
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
            // The group's 4 × count interleaved scores fit in its four rows of the scratch.
            float* s = scores + ((long)r * scoreStride);
            Vector128<float> blockMax = Scores4<TFormat>(keys, count, rowBytes, headDim, q + ((long)r * headDim), s, prefetchV, prefetchK);
            Softmax4(s, count, acc + ((long)r * headDim), headDim, max + r, sum + r, blockMax);
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
            Accumulate4<TFormat>(values, count, rowBytes, headDim, scores + ((long)r * scoreStride), acc + ((long)r * headDim));
        }

        for (; r < rows; r++)
        {
            Accumulate1<TFormat>(values, count, rowBytes, headDim, scores + ((long)r * scoreStride), acc + ((long)r * headDim));
        }
    }

    /// <summary>
    /// Softmax for the four rows of a group, whose interleaved scores ([token][4]) <see cref="Scores4"/> wrote and
    /// whose block maxima it found: one shift vector holds the four rows' maxima twice, so every exp runs on
    /// two tokens of all four rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax4(float* s, int count, float* acc0, int headDim, float* max, float* sum, Vector128<float> blockMax)
    {
        float m0 = Raise(acc0, headDim, ref max[0], ref sum[0], blockMax.GetElement(0));
        float m1 = Raise(acc0 + headDim, headDim, ref max[1], ref sum[1], blockMax.GetElement(1));
        float m2 = Raise(acc0 + (2 * headDim), headDim, ref max[2], ref sum[2], blockMax.GetElement(2));
        float m3 = Raise(acc0 + (3 * headDim), headDim, ref max[3], ref sum[3], blockMax.GetElement(3));
        var m = Vector128.Create(m0, m1, m2, m3);
        var shift = Vector256.Create(m, m);
        Vector256<float> t0 = Vector256<float>.Zero;
        Vector256<float> t1 = Vector256<float>.Zero;
        int n = 4 * count;
        int i = 0;
        for (; i <= n - (2 * Width); i += 2 * Width)
        {
            Vector256<float> e0 = VectorExp.Exp(Vector256.Load(s + i) - shift);
            Vector256<float> e1 = VectorExp.Exp(Vector256.Load(s + i + Width) - shift);
            e0.Store(s + i);
            e1.Store(s + i + Width);
            t0 += e0;
            t1 += e1;
        }

        if (i <= n - Width)
        {
            Vector256<float> e0 = VectorExp.Exp(Vector256.Load(s + i) - shift);
            e0.Store(s + i);
            t0 += e0;
            i += Width;
        }

        t0 += t1;
        Vector128<float> total = t0.GetLower() + t0.GetUpper();
        if (i < n)
        {
            // An odd count leaves one token: its four scores fill the lower half (the upper half's exp(0) is dropped).
            Vector128<float> e = VectorExp.Exp(Vector256.Create(Vector128.Load(s + i) - m, Vector128<float>.Zero)).GetLower();
            e.Store(s + i);
            total += e;
        }

        (Vector128.Load(sum) + total).Store(sum);
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
    /// Scores of four query rows against the segment's keys, written interleaved ([token][4]) to
    /// <paramref name="s"/>, two key rows at a time, sixteen elements (one <see cref="IVectorRowFormat.Load16"/>)
    /// per inner step; the eight dot products of a step reduce together into the two tokens' groups of four.
    /// Returns each row's largest score.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Scores4<TFormat>(byte* keys, int count, int rowBytes, int headDim, float* q0, float* s, byte* prefetchA, byte* prefetchB)
        where TFormat : struct, IVectorRowFormat
    {
        float* q1 = q0 + headDim;
        float* q2 = q1 + headDim;
        float* q3 = q2 + headDim;
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

            // [token j: rows 0..3 | token j + 1: rows 0..3], stored whole; vmaxps (not the NaN-ordering Vector256.Max,
            // eight instructions on AVX2) keeps the running maxima.
            Vector256<float> dots = Sum8(a00, a10, a20, a30, a01, a11, a21, a31);
            dots.Store(s + (4 * j));
            best = Avx.Max(best, dots);
        }

        // best holds each row's maxima over the first and the second token of a step in its two halves.
        Vector128<float> blockMax = Sse.Max(best.GetLower(), best.GetUpper());
        if (j < count)
        {
            if (prefetchA != null)
            {
                PrefetchRow(prefetchA + ((long)j * rowBytes), rowBytes);
                PrefetchRow(prefetchB + ((long)j * rowBytes), rowBytes);
            }

            blockMax = Sse.Max(blockMax, Dots1<TFormat>(keys + ((long)j * rowBytes), headDim, q0, s + (4 * j)));
        }

        return blockMax;
    }

    /// <summary>
    /// Sums of eight vectors, x[k, r] for two tokens k and four query rows r, into one vector [x00, x01, x02, x03,
    /// x10, x11, x12, x13]: two levels of horizontal adds per 128-bit lane, then the two lanes added.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sum8(
        Vector256<float> x00, Vector256<float> x01, Vector256<float> x02, Vector256<float> x03,
        Vector256<float> x10, Vector256<float> x11, Vector256<float> x12, Vector256<float> x13)
    {
        Vector256<float> g0 = Avx.HorizontalAdd(Avx.HorizontalAdd(x00, x01), Avx.HorizontalAdd(x02, x03));
        Vector256<float> g1 = Avx.HorizontalAdd(Avx.HorizontalAdd(x10, x11), Avx.HorizontalAdd(x12, x13));
        return Avx.Permute2x128(g0, g1, 0x20) + Avx.Permute2x128(g0, g1, 0x31);
    }

    /// <summary>The dot products of four query rows with the one key row at <paramref name="k"/>, stored at <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Dots1<TFormat>(byte* k, int headDim, float* q0, float* s)
        where TFormat : struct, IVectorRowFormat
    {
        float* q1 = q0 + headDim;
        float* q2 = q1 + headDim;
        float* q3 = q2 + headDim;
        int chunkBytes = Chunk * TFormat.ElementSize;
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
        dots.Store(s);
        return dots;
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
    /// <paramref name="p"/> holds the group's weights interleaved, [token][4].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate4<TFormat>(byte* values, int count, int rowBytes, int headDim, float* p, float* acc0)
        where TFormat : struct, IVectorRowFormat
    {
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
                float* pj = p;
                for (int j = 0; j < count; j++, v += rowBytes, pj += 4)
                {
                    TFormat.Load16(v, h, out Vector256<float> va, out Vector256<float> vb);
                    var w = Vector256.Create(pj[0]);
                    a0 = Vector256.FusedMultiplyAdd(w, va, a0);
                    b0 = Vector256.FusedMultiplyAdd(w, vb, b0);
                    w = Vector256.Create(pj[1]);
                    a1 = Vector256.FusedMultiplyAdd(w, va, a1);
                    b1 = Vector256.FusedMultiplyAdd(w, vb, b1);
                    w = Vector256.Create(pj[2]);
                    a2 = Vector256.FusedMultiplyAdd(w, va, a2);
                    b2 = Vector256.FusedMultiplyAdd(w, vb, b2);
                    w = Vector256.Create(pj[3]);
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

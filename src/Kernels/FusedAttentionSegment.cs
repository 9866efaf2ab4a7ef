using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvDb.Kernels;

/// <summary>
/// The inner loops of exact attention with Vector512, for head dims that are multiples of 32: one segment of
/// consecutive rows of one KV head against all query rows of its GQA group. Query rows are register-blocked
/// four at a time, so every K and V vector is loaded and widened once per four query rows rather than once
/// per row, and rows are widened in registers instead of through a scratch buffer. The K pass also takes
/// four key rows per step and the V pass two chunks per step, so each query vector or broadcast weight it
/// loads feeds several FMAs: with one 512-bit load and one 512-bit FMA per cycle (Zen 4), loading an operand
/// per FMA or two made the loops load-bound rather than FMA-bound.
/// Query rows, accumulators and scores are f32 in the format's element order (see <see cref="IVectorRowFormat"/>).
/// </summary>
internal static unsafe class FusedAttentionSegment
{
    /// <summary>Elements one <see cref="IVectorRowFormat.Load32"/> delivers.</summary>
    public const int Chunk = 32;

    private const int Half = 16;

    /// <summary>
    /// Folds <paramref name="count"/> rows at <paramref name="keys"/>/<paramref name="values"/> (stride
    /// headDim elements) into the online-softmax state of <paramref name="rows"/> query rows: q and acc are
    /// [rows, headDim], max and sum [rows], scores [rows, scoreStride] scratch. <paramref name="nextKeys"/>,
    /// when not null, is where the caller's next segment starts: it is prefetched while this one computes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TFormat>(byte* keys, byte* values, byte* nextKeys, int count, int headDim, int rows, float* q, float* acc, float* max, float* sum, float* scores, int scoreStride)
        where TFormat : struct, IVectorRowFormat
    {
        int rowBytes = headDim * TFormat.ElementSize;

        // A KV head's rows in a block are a short run (16 KiB for bf16, d = 128, 64 rows) followed by a jump to
        // the next block, too short for the hardware prefetcher to ramp up. So the first pass over K also
        // prefetches, row for row, this segment's V and the next segment's K: spread over the pass they trickle
        // out instead of flooding the miss queue, and the later loads find their lines in L2.
        byte* prefetchV = values;
        byte* prefetchK = nextKeys != null ? nextKeys : values;
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

    /// <summary>
    /// <see cref="Softmax"/> for four rows whose block maxima <see cref="Scores4"/> found along the way: the
    /// four rows' exp chains interleave, and their sums reduce together.
    /// </summary>
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
        var shift0 = Vector512.Create(m0);
        var shift1 = Vector512.Create(m1);
        var shift2 = Vector512.Create(m2);
        var shift3 = Vector512.Create(m3);
        Vector512<float> t0 = Vector512<float>.Zero;
        Vector512<float> t1 = Vector512<float>.Zero;
        Vector512<float> t2 = Vector512<float>.Zero;
        Vector512<float> t3 = Vector512<float>.Zero;
        int i = 0;
        for (; i <= count - Half; i += Half)
        {
            Vector512<float> e0 = VectorExp.Exp(Vector512.Load(s0 + i) - shift0);
            Vector512<float> e1 = VectorExp.Exp(Vector512.Load(s1 + i) - shift1);
            Vector512<float> e2 = VectorExp.Exp(Vector512.Load(s2 + i) - shift2);
            Vector512<float> e3 = VectorExp.Exp(Vector512.Load(s3 + i) - shift3);
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
            var f = Vector512.Create(factor);
            for (int o = 0; o < headDim; o += Half)
            {
                (Vector512.Load(acc + o) * f).Store(acc + o);
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
        var vmax = Vector512.Create(float.NegativeInfinity);
        for (; i <= count - Half; i += Half)
        {
            vmax = Vector512.Max(vmax, Vector512.Load(s + i));
        }

        Vector256<float> m8 = Vector256.Max(vmax.GetLower(), vmax.GetUpper());
        Vector128<float> m4 = Vector128.Max(m8.GetLower(), m8.GetUpper());
        float blockMax = Math.Max(Math.Max(m4.GetElement(0), m4.GetElement(1)), Math.Max(m4.GetElement(2), m4.GetElement(3)));
        for (; i < count; i++)
        {
            blockMax = Math.Max(blockMax, s[i]);
        }

        float newMax = Raise(acc, headDim, ref max, ref sum, blockMax);
        var shift = Vector512.Create(newMax);
        Vector512<float> total = Vector512<float>.Zero;
        for (i = 0; i <= count - Half; i += Half)
        {
            Vector512<float> e = VectorExp.Exp(Vector512.Load(s + i) - shift);
            e.Store(s + i);
            total += e;
        }

        sum += Vector512.Sum(total) + ExpTail(s, i, count, newMax);
    }

    /// <summary>
    /// Prefetches into L2 only: fetching into L1 as well ties up its few miss buffers and made the loop
    /// slower than no prefetch at all, while L2 hits are cheap enough for both the V pass and the next K pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchRow(byte* row, int rowBytes)
    {
        if (Sse.IsSupported)
        {
            for (int o = 0; o < rowBytes; o += 64)
            {
                Sse.Prefetch1(row + o);
            }
        }
    }

    /// <summary>
    /// Sums of four vectors at once: a tree of horizontal adds shares the shuffles that four separate
    /// reductions would each pay for. Only reached where Vector512 is accelerated, which implies AVX.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Sum4(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        Vector256<float> x01 = Avx.HorizontalAdd(a0.GetLower() + a0.GetUpper(), a1.GetLower() + a1.GetUpper());
        Vector256<float> x23 = Avx.HorizontalAdd(a2.GetLower() + a2.GetUpper(), a3.GetLower() + a3.GetUpper());
        Vector256<float> z = Avx.HorizontalAdd(x01, x23);
        return z.GetLower() + z.GetUpper();
    }

    /// <summary>
    /// Sums of sixteen vectors at once, x[h, r] for four heads h and four key rows r, into one vector whose
    /// 128-bit lane h holds the sums of rows 0..3 of head h: a transposing tree of unpacks and lane shuffles
    /// that shares every shuffle among the sums, about three instructions per sum.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Sum16(
        Vector512<float> x00, Vector512<float> x01, Vector512<float> x02, Vector512<float> x03,
        Vector512<float> x10, Vector512<float> x11, Vector512<float> x12, Vector512<float> x13,
        Vector512<float> x20, Vector512<float> x21, Vector512<float> x22, Vector512<float> x23,
        Vector512<float> x30, Vector512<float> x31, Vector512<float> x32, Vector512<float> x33)
    {
        Vector512<float> u0 = LaneSums(x00, x01, x02, x03);
        Vector512<float> u1 = LaneSums(x10, x11, x12, x13);
        Vector512<float> u2 = LaneSums(x20, x21, x22, x23);
        Vector512<float> u3 = LaneSums(x30, x31, x32, x33);

        // Lanes [0, 2] + [1, 3] of two vectors at a time, twice, leaves lane h = the full sums of u_h.
        Vector512<float> v01 = Avx512F.Shuffle4x128(u0, u1, 0x88) + Avx512F.Shuffle4x128(u0, u1, 0xDD);
        Vector512<float> v23 = Avx512F.Shuffle4x128(u2, u3, 0x88) + Avx512F.Shuffle4x128(u2, u3, 0xDD);
        return Avx512F.Shuffle4x128(v01, v23, 0x88) + Avx512F.Shuffle4x128(v01, v23, 0xDD);
    }

    /// <summary>Every 128-bit lane of the result holds [Σ a, Σ b, Σ c, Σ d] over that lane of the inputs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LaneSums(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        // Per lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3] and the same for c, d; then pairs of doubles
        // interleave those into [a, b, c, d] halves.
        Vector512<float> ab = Avx512F.UnpackLow(a, b) + Avx512F.UnpackHigh(a, b);
        Vector512<float> cd = Avx512F.UnpackLow(c, d) + Avx512F.UnpackHigh(c, d);
        return Avx512F.UnpackLow(ab.AsDouble(), cd.AsDouble()).AsSingle() + Avx512F.UnpackHigh(ab.AsDouble(), cd.AsDouble()).AsSingle();
    }

    /// <summary>
    /// Scores of four query rows against the segment's keys, four key rows at a time: each query vector loaded
    /// feeds eight FMAs (two halves of four rows) instead of two, which takes the loop off the load port, and
    /// the sixteen dot products of a step are reduced together by <see cref="Sum16"/>.
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
        var best = Vector512.Create(float.NegativeInfinity);
        int j = 0;
        for (; j + 4 <= count; j += 4)
        {
            if (prefetchA != null)
            {
                PrefetchRow(prefetchA + ((long)j * rowBytes), 4 * rowBytes);
                PrefetchRow(prefetchB + ((long)j * rowBytes), 4 * rowBytes);
            }

            byte* k = keys + ((long)j * rowBytes);
            Vector512<float> a00 = Vector512<float>.Zero, a01 = Vector512<float>.Zero, a02 = Vector512<float>.Zero, a03 = Vector512<float>.Zero;
            Vector512<float> a10 = Vector512<float>.Zero, a11 = Vector512<float>.Zero, a12 = Vector512<float>.Zero, a13 = Vector512<float>.Zero;
            Vector512<float> a20 = Vector512<float>.Zero, a21 = Vector512<float>.Zero, a22 = Vector512<float>.Zero, a23 = Vector512<float>.Zero;
            Vector512<float> a30 = Vector512<float>.Zero, a31 = Vector512<float>.Zero, a32 = Vector512<float>.Zero, a33 = Vector512<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                TFormat.Load32(k, out Vector512<float> k0a, out Vector512<float> k0b);
                TFormat.Load32(k + rowBytes, out Vector512<float> k1a, out Vector512<float> k1b);
                TFormat.Load32(k + (2 * rowBytes), out Vector512<float> k2a, out Vector512<float> k2b);
                TFormat.Load32(k + (3 * rowBytes), out Vector512<float> k3a, out Vector512<float> k3b);

                Vector512<float> q0a = Vector512.Load(q0 + o);
                Vector512<float> q0b = Vector512.Load(q0 + o + Half);
                a00 = Vector512.FusedMultiplyAdd(q0a, k0a, a00);
                a01 = Vector512.FusedMultiplyAdd(q0a, k1a, a01);
                a02 = Vector512.FusedMultiplyAdd(q0a, k2a, a02);
                a03 = Vector512.FusedMultiplyAdd(q0a, k3a, a03);
                a00 = Vector512.FusedMultiplyAdd(q0b, k0b, a00);
                a01 = Vector512.FusedMultiplyAdd(q0b, k1b, a01);
                a02 = Vector512.FusedMultiplyAdd(q0b, k2b, a02);
                a03 = Vector512.FusedMultiplyAdd(q0b, k3b, a03);
                Vector512<float> q1a = Vector512.Load(q1 + o);
                Vector512<float> q1b = Vector512.Load(q1 + o + Half);
                a10 = Vector512.FusedMultiplyAdd(q1a, k0a, a10);
                a11 = Vector512.FusedMultiplyAdd(q1a, k1a, a11);
                a12 = Vector512.FusedMultiplyAdd(q1a, k2a, a12);
                a13 = Vector512.FusedMultiplyAdd(q1a, k3a, a13);
                a10 = Vector512.FusedMultiplyAdd(q1b, k0b, a10);
                a11 = Vector512.FusedMultiplyAdd(q1b, k1b, a11);
                a12 = Vector512.FusedMultiplyAdd(q1b, k2b, a12);
                a13 = Vector512.FusedMultiplyAdd(q1b, k3b, a13);
                Vector512<float> q2a = Vector512.Load(q2 + o);
                Vector512<float> q2b = Vector512.Load(q2 + o + Half);
                a20 = Vector512.FusedMultiplyAdd(q2a, k0a, a20);
                a21 = Vector512.FusedMultiplyAdd(q2a, k1a, a21);
                a22 = Vector512.FusedMultiplyAdd(q2a, k2a, a22);
                a23 = Vector512.FusedMultiplyAdd(q2a, k3a, a23);
                a20 = Vector512.FusedMultiplyAdd(q2b, k0b, a20);
                a21 = Vector512.FusedMultiplyAdd(q2b, k1b, a21);
                a22 = Vector512.FusedMultiplyAdd(q2b, k2b, a22);
                a23 = Vector512.FusedMultiplyAdd(q2b, k3b, a23);
                Vector512<float> q3a = Vector512.Load(q3 + o);
                Vector512<float> q3b = Vector512.Load(q3 + o + Half);
                a30 = Vector512.FusedMultiplyAdd(q3a, k0a, a30);
                a31 = Vector512.FusedMultiplyAdd(q3a, k1a, a31);
                a32 = Vector512.FusedMultiplyAdd(q3a, k2a, a32);
                a33 = Vector512.FusedMultiplyAdd(q3a, k3a, a33);
                a30 = Vector512.FusedMultiplyAdd(q3b, k0b, a30);
                a31 = Vector512.FusedMultiplyAdd(q3b, k1b, a31);
                a32 = Vector512.FusedMultiplyAdd(q3b, k2b, a32);
                a33 = Vector512.FusedMultiplyAdd(q3b, k3b, a33);
            }

            Vector512<float> dots = Sum16(a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33);
            Avx512F.ExtractVector128(dots, 0).Store(s0 + j);
            Avx512F.ExtractVector128(dots, 1).Store(s1 + j);
            Avx512F.ExtractVector128(dots, 2).Store(s2 + j);
            Avx512F.ExtractVector128(dots, 3).Store(s3 + j);
            best = Vector512.Max(best, dots);
        }

        // Lane h of best holds row h's maxima over four key-row positions: fold them, then gather the four.
        best = Vector512.Max(best, Avx512F.Shuffle(best, best, 0xB1));
        best = Vector512.Max(best, Avx512F.Shuffle(best, best, 0x4E));
        Vector128<float> blockMax = Vector128.Create(
            Avx512F.ExtractVector128(best, 0).ToScalar(),
            Avx512F.ExtractVector128(best, 1).ToScalar(),
            Avx512F.ExtractVector128(best, 2).ToScalar(),
            Avx512F.ExtractVector128(best, 3).ToScalar());

        for (; j < count; j++)
        {
            if (prefetchA != null)
            {
                PrefetchRow(prefetchA + ((long)j * rowBytes), rowBytes);
                PrefetchRow(prefetchB + ((long)j * rowBytes), rowBytes);
            }

            byte* k = keys + ((long)j * rowBytes);
            Vector512<float> a0 = Vector512<float>.Zero;
            Vector512<float> a1 = Vector512<float>.Zero;
            Vector512<float> a2 = Vector512<float>.Zero;
            Vector512<float> a3 = Vector512<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                TFormat.Load32(k, out Vector512<float> ka, out Vector512<float> kb);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(q0 + o + Half), kb, Vector512.FusedMultiplyAdd(Vector512.Load(q0 + o), ka, a0));
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(q1 + o + Half), kb, Vector512.FusedMultiplyAdd(Vector512.Load(q1 + o), ka, a1));
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(q2 + o + Half), kb, Vector512.FusedMultiplyAdd(Vector512.Load(q2 + o), ka, a2));
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(q3 + o + Half), kb, Vector512.FusedMultiplyAdd(Vector512.Load(q3 + o), ka, a3));
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
            Vector512<float> a0 = Vector512<float>.Zero;
            Vector512<float> b0 = Vector512<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                TFormat.Load32(k, out Vector512<float> ka, out Vector512<float> kb);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(q0 + o), ka, a0);
                b0 = Vector512.FusedMultiplyAdd(Vector512.Load(q0 + o + Half), kb, b0);
            }

            s0[j] = Vector512.Sum(a0 + b0);
        }
    }

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

        // Two chunks at a time keep sixteen accumulators of four rows in registers across the whole segment,
        // so each broadcast weight feeds four FMAs instead of two; the segment's V rows stay in L1/L2, so
        // walking them once per pair of chunks costs no memory traffic.
        int o = 0;
        for (; o + (2 * Chunk) <= headDim; o += 2 * Chunk)
        {
            Vector512<float> a0 = Vector512.Load(acc0 + o);
            Vector512<float> b0 = Vector512.Load(acc0 + o + Half);
            Vector512<float> c0 = Vector512.Load(acc0 + o + Chunk);
            Vector512<float> d0 = Vector512.Load(acc0 + o + Chunk + Half);
            Vector512<float> a1 = Vector512.Load(acc1 + o);
            Vector512<float> b1 = Vector512.Load(acc1 + o + Half);
            Vector512<float> c1 = Vector512.Load(acc1 + o + Chunk);
            Vector512<float> d1 = Vector512.Load(acc1 + o + Chunk + Half);
            Vector512<float> a2 = Vector512.Load(acc2 + o);
            Vector512<float> b2 = Vector512.Load(acc2 + o + Half);
            Vector512<float> c2 = Vector512.Load(acc2 + o + Chunk);
            Vector512<float> d2 = Vector512.Load(acc2 + o + Chunk + Half);
            Vector512<float> a3 = Vector512.Load(acc3 + o);
            Vector512<float> b3 = Vector512.Load(acc3 + o + Half);
            Vector512<float> c3 = Vector512.Load(acc3 + o + Chunk);
            Vector512<float> d3 = Vector512.Load(acc3 + o + Chunk + Half);
            byte* v = values + ((long)(o / Chunk) * chunkBytes);
            for (int j = 0; j < count; j++, v += rowBytes)
            {
                TFormat.Load32(v, out Vector512<float> va, out Vector512<float> vb);
                TFormat.Load32(v + chunkBytes, out Vector512<float> vc, out Vector512<float> vd);
                var w = Vector512.Create(p0[j]);
                a0 = Vector512.FusedMultiplyAdd(w, va, a0);
                b0 = Vector512.FusedMultiplyAdd(w, vb, b0);
                c0 = Vector512.FusedMultiplyAdd(w, vc, c0);
                d0 = Vector512.FusedMultiplyAdd(w, vd, d0);
                w = Vector512.Create(p1[j]);
                a1 = Vector512.FusedMultiplyAdd(w, va, a1);
                b1 = Vector512.FusedMultiplyAdd(w, vb, b1);
                c1 = Vector512.FusedMultiplyAdd(w, vc, c1);
                d1 = Vector512.FusedMultiplyAdd(w, vd, d1);
                w = Vector512.Create(p2[j]);
                a2 = Vector512.FusedMultiplyAdd(w, va, a2);
                b2 = Vector512.FusedMultiplyAdd(w, vb, b2);
                c2 = Vector512.FusedMultiplyAdd(w, vc, c2);
                d2 = Vector512.FusedMultiplyAdd(w, vd, d2);
                w = Vector512.Create(p3[j]);
                a3 = Vector512.FusedMultiplyAdd(w, va, a3);
                b3 = Vector512.FusedMultiplyAdd(w, vb, b3);
                c3 = Vector512.FusedMultiplyAdd(w, vc, c3);
                d3 = Vector512.FusedMultiplyAdd(w, vd, d3);
            }

            a0.Store(acc0 + o);
            b0.Store(acc0 + o + Half);
            c0.Store(acc0 + o + Chunk);
            d0.Store(acc0 + o + Chunk + Half);
            a1.Store(acc1 + o);
            b1.Store(acc1 + o + Half);
            c1.Store(acc1 + o + Chunk);
            d1.Store(acc1 + o + Chunk + Half);
            a2.Store(acc2 + o);
            b2.Store(acc2 + o + Half);
            c2.Store(acc2 + o + Chunk);
            d2.Store(acc2 + o + Chunk + Half);
            a3.Store(acc3 + o);
            b3.Store(acc3 + o + Half);
            c3.Store(acc3 + o + Chunk);
            d3.Store(acc3 + o + Chunk + Half);
        }

        // A head dim that is an odd number of chunks ends with one chunk of eight accumulators.
        for (; o < headDim; o += Chunk)
        {
            Vector512<float> a0 = Vector512.Load(acc0 + o);
            Vector512<float> b0 = Vector512.Load(acc0 + o + Half);
            Vector512<float> a1 = Vector512.Load(acc1 + o);
            Vector512<float> b1 = Vector512.Load(acc1 + o + Half);
            Vector512<float> a2 = Vector512.Load(acc2 + o);
            Vector512<float> b2 = Vector512.Load(acc2 + o + Half);
            Vector512<float> a3 = Vector512.Load(acc3 + o);
            Vector512<float> b3 = Vector512.Load(acc3 + o + Half);
            byte* v = values + ((long)(o / Chunk) * chunkBytes);
            for (int j = 0; j < count; j++, v += rowBytes)
            {
                TFormat.Load32(v, out Vector512<float> va, out Vector512<float> vb);
                var w = Vector512.Create(p0[j]);
                a0 = Vector512.FusedMultiplyAdd(w, va, a0);
                b0 = Vector512.FusedMultiplyAdd(w, vb, b0);
                w = Vector512.Create(p1[j]);
                a1 = Vector512.FusedMultiplyAdd(w, va, a1);
                b1 = Vector512.FusedMultiplyAdd(w, vb, b1);
                w = Vector512.Create(p2[j]);
                a2 = Vector512.FusedMultiplyAdd(w, va, a2);
                b2 = Vector512.FusedMultiplyAdd(w, vb, b2);
                w = Vector512.Create(p3[j]);
                a3 = Vector512.FusedMultiplyAdd(w, va, a3);
                b3 = Vector512.FusedMultiplyAdd(w, vb, b3);
            }

            a0.Store(acc0 + o);
            b0.Store(acc0 + o + Half);
            a1.Store(acc1 + o);
            b1.Store(acc1 + o + Half);
            a2.Store(acc2 + o);
            b2.Store(acc2 + o + Half);
            a3.Store(acc3 + o);
            b3.Store(acc3 + o + Half);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate1<TFormat>(byte* values, int count, int rowBytes, int headDim, float* p0, float* acc0)
        where TFormat : struct, IVectorRowFormat
    {
        int chunkBytes = Chunk * TFormat.ElementSize;
        for (int o = 0; o < headDim; o += Chunk)
        {
            Vector512<float> a0 = Vector512.Load(acc0 + o);
            Vector512<float> b0 = Vector512.Load(acc0 + o + Half);
            byte* v = values + ((long)(o / Chunk) * chunkBytes);
            for (int j = 0; j < count; j++, v += rowBytes)
            {
                TFormat.Load32(v, out Vector512<float> va, out Vector512<float> vb);
                var w = Vector512.Create(p0[j]);
                a0 = Vector512.FusedMultiplyAdd(w, va, a0);
                b0 = Vector512.FusedMultiplyAdd(w, vb, b0);
            }

            a0.Store(acc0 + o);
            b0.Store(acc0 + o + Half);
        }
    }
}

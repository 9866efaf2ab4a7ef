using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvDb.Kernels;

/// <summary>
/// The inner loops of exact attention with Vector512, for head dims that are multiples of 32: one segment of
/// consecutive rows of one KV head against all query rows of its GQA group. Query rows are register-blocked
/// four at a time, so every K and V vector is loaded and widened once per four query rows rather than once
/// per row, and rows are widened in registers instead of through a scratch buffer.
/// Query rows, accumulators and scores are f32 in the format's element order (see <see cref="IVectorRowFormat"/>).
/// </summary>
internal static unsafe class FusedAttentionSegment
{
    /// <summary>Elements one <see cref="IVectorRowFormat.Load32"/> delivers.</summary>
    public const int Chunk = 32;

    private const int Half = 16;

    /// <summary>True when this machine and head dim can use the fused loops.</summary>
    public static bool Supports(int headDim) => Vector512.IsHardwareAccelerated && headDim % Chunk == 0;

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
            Scores4<TFormat>(keys, count, rowBytes, headDim, q + ((long)r * headDim), scores + ((long)r * scoreStride), scoreStride, prefetchV, prefetchK);
            prefetchV = prefetchK = null;
        }

        for (; r < rows; r++)
        {
            Scores1<TFormat>(keys, count, rowBytes, headDim, q + ((long)r * headDim), scores + ((long)r * scoreStride), prefetchV, prefetchK);
            prefetchV = prefetchK = null;
        }

        for (r = 0; r < rows; r++)
        {
            Softmax(scores + ((long)r * scoreStride), count, acc + ((long)r * headDim), headDim, ref max[r], ref sum[r]);
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

        var shift = Vector512.Create(newMax);
        Vector512<float> total = Vector512<float>.Zero;
        for (i = 0; i <= count - Half; i += Half)
        {
            Vector512<float> e = VectorExp.Exp(Vector512.Load(s + i) - shift);
            e.Store(s + i);
            total += e;
        }

        float tail = 0;
        for (; i < count; i++)
        {
            float e = MathF.Exp(s[i] - newMax);
            s[i] = e;
            tail += e;
        }

        sum += Vector512.Sum(total) + tail;
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
    private static void Scores4<TFormat>(byte* keys, int count, int rowBytes, int headDim, float* q0, float* s0, int scoreStride, byte* prefetchA, byte* prefetchB)
        where TFormat : struct, IVectorRowFormat
    {
        float* q1 = q0 + headDim;
        float* q2 = q1 + headDim;
        float* q3 = q2 + headDim;
        float* s1 = s0 + scoreStride;
        float* s2 = s1 + scoreStride;
        float* s3 = s2 + scoreStride;
        int chunkBytes = Chunk * TFormat.ElementSize;
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
        }

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
        }
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

        // Chunk-outer keeps the eight accumulators of four rows in registers across the whole segment; the
        // segment's V rows stay in L1/L2, so walking them once per chunk costs no memory traffic.
        for (int o = 0; o < headDim; o += Chunk)
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

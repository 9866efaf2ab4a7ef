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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores4<TFormat>(byte* keys, int count, int rowBytes, int headDim, float* q0, float* s0, int scoreStride, byte* prefetchA, byte* prefetchB)
        where TFormat : struct, IVectorRowFormat
    {
        float* q1 = q0 + headDim;
        float* q2 = q1 + headDim;
        float* q3 = q2 + headDim;
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
            Vector512<float> a1 = Vector512<float>.Zero;
            Vector512<float> a2 = Vector512<float>.Zero;
            Vector512<float> a3 = Vector512<float>.Zero;
            Vector512<float> b0 = Vector512<float>.Zero;
            Vector512<float> b1 = Vector512<float>.Zero;
            Vector512<float> b2 = Vector512<float>.Zero;
            Vector512<float> b3 = Vector512<float>.Zero;
            for (int o = 0; o < headDim; o += Chunk, k += chunkBytes)
            {
                TFormat.Load32(k, out Vector512<float> ka, out Vector512<float> kb);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(q0 + o), ka, a0);
                b0 = Vector512.FusedMultiplyAdd(Vector512.Load(q0 + o + Half), kb, b0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(q1 + o), ka, a1);
                b1 = Vector512.FusedMultiplyAdd(Vector512.Load(q1 + o + Half), kb, b1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(q2 + o), ka, a2);
                b2 = Vector512.FusedMultiplyAdd(Vector512.Load(q2 + o + Half), kb, b2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(q3 + o), ka, a3);
                b3 = Vector512.FusedMultiplyAdd(Vector512.Load(q3 + o + Half), kb, b3);
            }

            Vector128<float> dots = Sum4(a0 + b0, a1 + b1, a2 + b2, a3 + b3);
            s0[j] = dots.GetElement(0);
            s0[scoreStride + j] = dots.GetElement(1);
            s0[(2 * scoreStride) + j] = dots.GetElement(2);
            s0[(3 * scoreStride) + j] = dots.GetElement(3);
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

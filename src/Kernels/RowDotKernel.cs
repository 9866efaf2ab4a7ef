using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// Inner products of one query with many f32 or bf16 rows (contiguous or gathered by index): the scoring step of
/// every index search. Four rows share each query load, so the query stays in registers while the rows stream.
/// </summary>
public static unsafe class RowDotKernel
{
    /// <summary>scores[i] = query · rows[i] for rows laid out [scores.Length, query.Length].</summary>
    public static void Scores(ReadOnlySpan<float> query, ReadOnlySpan<float> rows, Span<float> scores)
    {
        int d = query.Length;
        int n = scores.Length;
        if (d == 0 || rows.Length < (long)n * d)
        {
            throw new ArgumentException($"rows must hold {n}×{d} floats, got {rows.Length}");
        }

        fixed (float* q = query)
        fixed (float* r = rows)
        fixed (float* s = scores)
        {
            int i = 0;
            for (; i <= n - 4; i += 4)
            {
                float* r0 = r + (long)i * d;
                Dot4(q, r0, r0 + d, r0 + 2 * d, r0 + 3 * d, d, s + i);
            }

            for (; i < n; i++)
            {
                s[i] = Dot(q, r + (long)i * d, d);
            }
        }
    }

    /// <summary>scores[j] = query · rows[indices[j]] for rows laid out [*, query.Length].</summary>
    public static void GatheredScores(ReadOnlySpan<float> query, ReadOnlySpan<float> rows, ReadOnlySpan<int> indices, Span<float> scores) =>
        Gathered<float, SingleRows>(query, rows, indices, scores);

    /// <summary>
    /// scores[j] = query · rows[indices[j]] for bf16 rows (raw bits, laid out [*, query.Length]), each
    /// element widened to f32 exactly; the index families keep their key copies this way at half the bytes.
    /// </summary>
    public static void GatheredScoresBFloat16(ReadOnlySpan<float> query, ReadOnlySpan<ushort> rows, ReadOnlySpan<int> indices, Span<float> scores) =>
        Gathered<ushort, BFloat16Rows>(query, rows, indices, scores);

    /// <summary>One driver for every row element type: four rows per step (their loads overlap), then single rows.</summary>
    private static void Gathered<T, TRows>(ReadOnlySpan<float> query, ReadOnlySpan<T> rows, ReadOnlySpan<int> indices, Span<float> scores)
        where T : unmanaged
        where TRows : IRowElements<T>
    {
        int d = query.Length;
        int n = indices.Length;
        if (d == 0 || scores.Length < n)
        {
            throw new ArgumentException("scores must hold one float per index");
        }

        long rowCount = rows.Length / d;
        fixed (float* q = query)
        fixed (T* r = rows)
        fixed (int* idx = indices)
        fixed (float* s = scores)
        {
            int j = 0;
            for (; j <= n - 4; j += 4)
            {
                Check(idx[j], rowCount);
                Check(idx[j + 1], rowCount);
                Check(idx[j + 2], rowCount);
                Check(idx[j + 3], rowCount);
                TRows.Dot4(q, r + (long)idx[j] * d, r + (long)idx[j + 1] * d, r + (long)idx[j + 2] * d, r + (long)idx[j + 3] * d, d, s + j);
            }

            for (; j < n; j++)
            {
                Check(idx[j], rowCount);
                s[j] = TRows.Dot(q, r + (long)idx[j] * d, d);
            }
        }
    }

    /// <summary>query · row for two pointers of <paramref name="d"/> floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(float* q, float* k, int d)
    {
        if (Vector512.IsHardwareAccelerated && d >= 16)
        {
            Vector512<float> acc0 = Vector512<float>.Zero;
            Vector512<float> acc1 = Vector512<float>.Zero;
            int i = 0;
            for (; i <= d - 32; i += 32)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(q + i), Vector512.Load(k + i), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(q + i + 16), Vector512.Load(k + i + 16), acc1);
            }

            for (; i <= d - 16; i += 16)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(q + i), Vector512.Load(k + i), acc0);
            }

            float sum = Vector512.Sum(acc0 + acc1);
            for (; i < d; i++)
            {
                sum += q[i] * k[i];
            }

            return sum;
        }

        // AVX2 machines (no Vector512) took TensorPrimitives.Dot per row: a call and a reduction per row made
        // k-means on them 3x slower than the loop below.
        if (Vector256.IsHardwareAccelerated && d >= 8)
        {
            Vector256<float> acc0 = Vector256<float>.Zero;
            Vector256<float> acc1 = Vector256<float>.Zero;
            int i = 0;
            for (; i <= d - 16; i += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(q + i), Vector256.Load(k + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(q + i + 8), Vector256.Load(k + i + 8), acc1);
            }

            for (; i <= d - 8; i += 8)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(q + i), Vector256.Load(k + i), acc0);
            }

            float sum = Vector256.Sum(acc0 + acc1);
            for (; i < d; i++)
            {
                sum += q[i] * k[i];
            }

            return sum;
        }

        return TensorPrimitives.Dot(new ReadOnlySpan<float>(q, d), new ReadOnlySpan<float>(k, d));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4(float* q, float* k0, float* k1, float* k2, float* k3, int d, float* output)
    {
        if (Vector512.IsHardwareAccelerated && d >= 16)
        {
            Vector512<float> a0 = Vector512<float>.Zero;
            Vector512<float> a1 = Vector512<float>.Zero;
            Vector512<float> a2 = Vector512<float>.Zero;
            Vector512<float> a3 = Vector512<float>.Zero;
            int i = 0;
            for (; i <= d - 16; i += 16)
            {
                Vector512<float> qv = Vector512.Load(q + i);
                a0 = Vector512.FusedMultiplyAdd(qv, Vector512.Load(k0 + i), a0);
                a1 = Vector512.FusedMultiplyAdd(qv, Vector512.Load(k1 + i), a1);
                a2 = Vector512.FusedMultiplyAdd(qv, Vector512.Load(k2 + i), a2);
                a3 = Vector512.FusedMultiplyAdd(qv, Vector512.Load(k3 + i), a3);
            }

            float s0 = Vector512.Sum(a0);
            float s1 = Vector512.Sum(a1);
            float s2 = Vector512.Sum(a2);
            float s3 = Vector512.Sum(a3);
            for (; i < d; i++)
            {
                s0 += q[i] * k0[i];
                s1 += q[i] * k1[i];
                s2 += q[i] * k2[i];
                s3 += q[i] * k3[i];
            }

            output[0] = s0;
            output[1] = s1;
            output[2] = s2;
            output[3] = s3;
            return;
        }

        if (Vector256.IsHardwareAccelerated && d >= 8)
        {
            Vector256<float> a0 = Vector256<float>.Zero;
            Vector256<float> a1 = Vector256<float>.Zero;
            Vector256<float> a2 = Vector256<float>.Zero;
            Vector256<float> a3 = Vector256<float>.Zero;
            int i = 0;
            for (; i <= d - 8; i += 8)
            {
                Vector256<float> qv = Vector256.Load(q + i);
                a0 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k0 + i), a0);
                a1 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k1 + i), a1);
                a2 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k2 + i), a2);
                a3 = Vector256.FusedMultiplyAdd(qv, Vector256.Load(k3 + i), a3);
            }

            float s0 = Vector256.Sum(a0);
            float s1 = Vector256.Sum(a1);
            float s2 = Vector256.Sum(a2);
            float s3 = Vector256.Sum(a3);
            for (; i < d; i++)
            {
                s0 += q[i] * k0[i];
                s1 += q[i] * k1[i];
                s2 += q[i] * k2[i];
                s3 += q[i] * k3[i];
            }

            output[0] = s0;
            output[1] = s1;
            output[2] = s2;
            output[3] = s3;
            return;
        }

        output[0] = Dot(q, k0, d);
        output[1] = Dot(q, k1, d);
        output[2] = Dot(q, k2, d);
        output[3] = Dot(q, k3, d);
    }

    /// <summary>
    /// Four bf16 rows against one f32 query. bf16 is the top half of an f32, so a zero-extend to 32 bits and a
    /// 16-bit shift widens it exactly; the low and high halves of each 32-element chunk feed separate
    /// accumulators so consecutive FMAs do not wait on each other.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotBFloat16x4(float* q, ushort* k0, ushort* k1, ushort* k2, ushort* k3, int d, float* output)
    {
        float s0 = 0;
        float s1 = 0;
        float s2 = 0;
        float s3 = 0;
        int i = 0;
        if (Vector512.IsHardwareAccelerated && d >= 32)
        {
            Vector512<float> a0 = Vector512<float>.Zero;
            Vector512<float> b0 = Vector512<float>.Zero;
            Vector512<float> a1 = Vector512<float>.Zero;
            Vector512<float> b1 = Vector512<float>.Zero;
            Vector512<float> a2 = Vector512<float>.Zero;
            Vector512<float> b2 = Vector512<float>.Zero;
            Vector512<float> a3 = Vector512<float>.Zero;
            Vector512<float> b3 = Vector512<float>.Zero;
            for (; i <= d - 32; i += 32)
            {
                Vector512<float> qlo = Vector512.Load(q + i);
                Vector512<float> qhi = Vector512.Load(q + i + 16);
                Accumulate(qlo, qhi, k0 + i, ref a0, ref b0);
                Accumulate(qlo, qhi, k1 + i, ref a1, ref b1);
                Accumulate(qlo, qhi, k2 + i, ref a2, ref b2);
                Accumulate(qlo, qhi, k3 + i, ref a3, ref b3);
            }

            s0 = Vector512.Sum(a0 + b0);
            s1 = Vector512.Sum(a1 + b1);
            s2 = Vector512.Sum(a2 + b2);
            s3 = Vector512.Sum(a3 + b3);
        }
        else if (Vector256.IsHardwareAccelerated && d >= 16)
        {
            Vector256<float> a0 = Vector256<float>.Zero;
            Vector256<float> b0 = Vector256<float>.Zero;
            Vector256<float> a1 = Vector256<float>.Zero;
            Vector256<float> b1 = Vector256<float>.Zero;
            Vector256<float> a2 = Vector256<float>.Zero;
            Vector256<float> b2 = Vector256<float>.Zero;
            Vector256<float> a3 = Vector256<float>.Zero;
            Vector256<float> b3 = Vector256<float>.Zero;
            for (; i <= d - 16; i += 16)
            {
                Vector256<float> qlo = Vector256.Load(q + i);
                Vector256<float> qhi = Vector256.Load(q + i + 8);
                Accumulate(qlo, qhi, k0 + i, ref a0, ref b0);
                Accumulate(qlo, qhi, k1 + i, ref a1, ref b1);
                Accumulate(qlo, qhi, k2 + i, ref a2, ref b2);
                Accumulate(qlo, qhi, k3 + i, ref a3, ref b3);
            }

            s0 = Vector256.Sum(a0 + b0);
            s1 = Vector256.Sum(a1 + b1);
            s2 = Vector256.Sum(a2 + b2);
            s3 = Vector256.Sum(a3 + b3);
        }

        for (; i < d; i++)
        {
            s0 += q[i] * ElementConversion.BFloat16ToSingle(k0[i]);
            s1 += q[i] * ElementConversion.BFloat16ToSingle(k1[i]);
            s2 += q[i] * ElementConversion.BFloat16ToSingle(k2[i]);
            s3 += q[i] * ElementConversion.BFloat16ToSingle(k3[i]);
        }

        output[0] = s0;
        output[1] = s1;
        output[2] = s2;
        output[3] = s3;
    }

    /// <summary>query · row for <paramref name="d"/> f32 query elements and bf16 row elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotBFloat16(float* q, ushort* k, int d)
    {
        float sum = 0;
        int i = 0;
        if (Vector512.IsHardwareAccelerated && d >= 32)
        {
            Vector512<float> a = Vector512<float>.Zero;
            Vector512<float> b = Vector512<float>.Zero;
            for (; i <= d - 32; i += 32)
            {
                Accumulate(Vector512.Load(q + i), Vector512.Load(q + i + 16), k + i, ref a, ref b);
            }

            sum = Vector512.Sum(a + b);
        }
        else if (Vector256.IsHardwareAccelerated && d >= 16)
        {
            Vector256<float> a = Vector256<float>.Zero;
            Vector256<float> b = Vector256<float>.Zero;
            for (; i <= d - 16; i += 16)
            {
                Accumulate(Vector256.Load(q + i), Vector256.Load(q + i + 8), k + i, ref a, ref b);
            }

            sum = Vector256.Sum(a + b);
        }

        for (; i < d; i++)
        {
            sum += q[i] * ElementConversion.BFloat16ToSingle(k[i]);
        }

        return sum;
    }

    /// <summary>Widens the 32 bf16 elements at <paramref name="k"/> and adds their products with the query halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(Vector512<float> qlo, Vector512<float> qhi, ushort* k, ref Vector512<float> lo, ref Vector512<float> hi)
    {
        (Vector512<uint> wideLo, Vector512<uint> wideHi) = Vector512.Widen(Vector512.Load(k));
        lo = Vector512.FusedMultiplyAdd(qlo, Vector512.ShiftLeft(wideLo, 16).AsSingle(), lo);
        hi = Vector512.FusedMultiplyAdd(qhi, Vector512.ShiftLeft(wideHi, 16).AsSingle(), hi);
    }

    /// <summary>Widens the 16 bf16 elements at <paramref name="k"/> and adds their products with the query halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(Vector256<float> qlo, Vector256<float> qhi, ushort* k, ref Vector256<float> lo, ref Vector256<float> hi)
    {
        (Vector256<uint> wideLo, Vector256<uint> wideHi) = Vector256.Widen(Vector256.Load(k));
        lo = Vector256.FusedMultiplyAdd(qlo, Vector256.ShiftLeft(wideLo, 16).AsSingle(), lo);
        hi = Vector256.FusedMultiplyAdd(qhi, Vector256.ShiftLeft(wideHi, 16).AsSingle(), hi);
    }

    private static void Check(int index, long rowCount)
    {
        if ((uint)index >= (ulong)rowCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"row index must be in [0, {rowCount})");
        }
    }

    /// <summary>Dot products of an f32 query with rows of one element type (static dispatch, no virtual calls).</summary>
    private interface IRowElements<T>
        where T : unmanaged
    {
        static abstract float Dot(float* q, T* row, int d);

        static abstract void Dot4(float* q, T* r0, T* r1, T* r2, T* r3, int d, float* output);
    }

    private readonly struct SingleRows : IRowElements<float>
    {
        public static float Dot(float* q, float* row, int d) => RowDotKernel.Dot(q, row, d);

        public static void Dot4(float* q, float* r0, float* r1, float* r2, float* r3, int d, float* output) => RowDotKernel.Dot4(q, r0, r1, r2, r3, d, output);
    }

    private readonly struct BFloat16Rows : IRowElements<ushort>
    {
        public static float Dot(float* q, ushort* row, int d) => DotBFloat16(q, row, d);

        public static void Dot4(float* q, ushort* r0, ushort* r1, ushort* r2, ushort* r3, int d, float* output) => DotBFloat16x4(q, r0, r1, r2, r3, d, output);
    }
}

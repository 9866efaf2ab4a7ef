using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// Inner products of one query with many f32 rows (contiguous or gathered by index): the scoring step of
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
    public static void GatheredScores(ReadOnlySpan<float> query, ReadOnlySpan<float> rows, ReadOnlySpan<int> indices, Span<float> scores)
    {
        int d = query.Length;
        int n = indices.Length;
        if (d == 0 || scores.Length < n)
        {
            throw new ArgumentException("scores must hold one float per index");
        }

        long rowCount = rows.Length / d;
        fixed (float* q = query)
        fixed (float* r = rows)
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
                Dot4(q, r + (long)idx[j] * d, r + (long)idx[j + 1] * d, r + (long)idx[j + 2] * d, r + (long)idx[j + 3] * d, d, s + j);
            }

            for (; j < n; j++)
            {
                Check(idx[j], rowCount);
                s[j] = Dot(q, r + (long)idx[j] * d, d);
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

        output[0] = Dot(q, k0, d);
        output[1] = Dot(q, k1, d);
        output[2] = Dot(q, k2, d);
        output[3] = Dot(q, k3, d);
    }

    private static void Check(int index, long rowCount)
    {
        if ((uint)index >= (ulong)rowCount)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"row index must be in [0, {rowCount})");
        }
    }
}

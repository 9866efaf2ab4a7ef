using System.Buffers;
using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// The k-means assignment step: each point goes to the centroid with the smallest squared L2 distance,
/// computed as ‖c‖² − 2·x·c (‖x‖² is the same for every centroid), so the inner loop is the
/// vectorized dot of <see cref="RowDotKernel"/>.
/// </summary>
public static class KMeansAssignKernel
{
    /// <summary>
    /// points [n, dim], centroids [k, dim]; writes the nearest centroid of each point into
    /// <paramref name="assignment"/> [n] and returns the sum of squared distances (the k-means objective).
    /// </summary>
    public static double Assign(ReadOnlySpan<float> points, ReadOnlySpan<float> centroids, int dim, Span<int> assignment)
    {
        int n = assignment.Length;
        int k = centroids.Length / dim;
        if (dim <= 0 || k == 0 || points.Length < (long)n * dim)
        {
            throw new ArgumentException("points must be [n, dim] with n = assignment.Length and at least one centroid");
        }

        if (Vector256.IsHardwareAccelerated && n >= TiledMinPoints && k >= Vector256<float>.Count)
        {
            return AssignTiled(points, centroids, dim, k, assignment);
        }

        float[] rented = ArrayPool<float>.Shared.Rent(2 * k);
        try
        {
            Span<float> norms = rented.AsSpan(0, k);
            Span<float> dots = rented.AsSpan(k, k);
            for (int c = 0; c < k; c++)
            {
                ReadOnlySpan<float> row = centroids.Slice(c * dim, dim);
                norms[c] = System.Numerics.Tensors.TensorPrimitives.Dot(row, row);
            }

            double objective = 0;
            for (int i = 0; i < n; i++)
            {
                ReadOnlySpan<float> x = points.Slice(i * dim, dim);
                RowDotKernel.Scores(x, centroids, dots);
                int best = 0;
                float bestValue = float.PositiveInfinity;
                for (int c = 0; c < k; c++)
                {
                    float value = norms[c] - 2f * dots[c];
                    if (value < bestValue)
                    {
                        bestValue = value;
                        best = c;
                    }
                }

                assignment[i] = best;
                objective += Math.Max(0, bestValue + System.Numerics.Tensors.TensorPrimitives.Dot(x, x));
            }

            return objective;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>Below this many points the centroids' transpose costs more than the tiled loop saves (Extend assigns one key at a time).</summary>
    private const int TiledMinPoints = 16;

    /// <summary>Centroids per tile: four vectors of eight.</summary>
    private const int TileCentroids = 32;

    /// <summary>
    /// The assignment as a small matrix product: centroids transposed to [dim, k] so that two points times 32
    /// centroids accumulate in eight registers, one broadcast per point and one load per eight centroids for each
    /// dimension. Dotting each centroid row in turn loaded a centroid vector per FMA and reduced every row
    /// horizontally, which held k-means (most of an index build) to about a tenth of the FMA peak.
    /// Minimizes ½‖c‖² − x·c (half of the distance minus ‖x‖²); padding centroids get +∞ and never win.
    /// </summary>
    private static unsafe double AssignTiled(ReadOnlySpan<float> points, ReadOnlySpan<float> centroids, int dim, int k, Span<int> assignment)
    {
        int n = assignment.Length;
        int padded = (k + TileCentroids - 1) / TileCentroids * TileCentroids;
        float[] transposed = ArrayPool<float>.Shared.Rent(dim * padded);
        float[] halfNorms = ArrayPool<float>.Shared.Rent(padded);
        try
        {
            Array.Clear(transposed, 0, dim * padded);
            for (int c = 0; c < padded; c++)
            {
                if (c < k)
                {
                    ReadOnlySpan<float> row = centroids.Slice(c * dim, dim);
                    halfNorms[c] = 0.5f * System.Numerics.Tensors.TensorPrimitives.Dot(row, row);
                    for (int j = 0; j < dim; j++)
                    {
                        transposed[j * padded + c] = row[j];
                    }
                }
                else
                {
                    halfNorms[c] = float.PositiveInfinity;
                }
            }

            double objective = 0;
            fixed (float* x = points)
            fixed (float* t = transposed)
            fixed (float* h = halfNorms)
            {
                for (int i = 0; i < n; i += 2)
                {
                    // An odd last point is paired with itself.
                    int second = Math.Min(i + 1, n - 1);
                    (int best0, float value0, int best1, float value1) = NearestOfPair(x + (long)i * dim, x + (long)second * dim, t, h, dim, padded);
                    assignment[i] = best0;
                    objective += Math.Max(0, 2f * value0 + System.Numerics.Tensors.TensorPrimitives.Dot(points.Slice(i * dim, dim), points.Slice(i * dim, dim)));
                    if (second != i)
                    {
                        assignment[second] = best1;
                        objective += Math.Max(0, 2f * value1 + System.Numerics.Tensors.TensorPrimitives.Dot(points.Slice(second * dim, dim), points.Slice(second * dim, dim)));
                    }
                }
            }

            return objective;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(transposed);
            ArrayPool<float>.Shared.Return(halfNorms);
        }
    }

    /// <summary>The nearest centroid of two points and its ½‖c‖² − x·c; ties go to the lower centroid index.</summary>
    private static unsafe (int Best0, float Value0, int Best1, float Value1) NearestOfPair(float* x0, float* x1, float* transposed, float* halfNorms, int dim, int padded)
    {
        Vector256<float> best0 = Vector256.Create(float.PositiveInfinity);
        Vector256<float> best1 = best0;
        Vector256<int> index0 = Vector256<int>.Zero;
        Vector256<int> index1 = Vector256<int>.Zero;
        Vector256<int> lanes = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
        for (int cb = 0; cb < padded; cb += TileCentroids)
        {
            Vector256<float> a00 = Vector256<float>.Zero, a01 = Vector256<float>.Zero, a02 = Vector256<float>.Zero, a03 = Vector256<float>.Zero;
            Vector256<float> a10 = Vector256<float>.Zero, a11 = Vector256<float>.Zero, a12 = Vector256<float>.Zero, a13 = Vector256<float>.Zero;
            float* col = transposed + cb;
            for (int j = 0; j < dim; j++, col += padded)
            {
                Vector256<float> p0 = Vector256.Create(x0[j]);
                Vector256<float> p1 = Vector256.Create(x1[j]);
                Vector256<float> c0 = Vector256.Load(col);
                Vector256<float> c1 = Vector256.Load(col + 8);
                Vector256<float> c2 = Vector256.Load(col + 16);
                Vector256<float> c3 = Vector256.Load(col + 24);
                a00 = Vector256.FusedMultiplyAdd(p0, c0, a00);
                a01 = Vector256.FusedMultiplyAdd(p0, c1, a01);
                a02 = Vector256.FusedMultiplyAdd(p0, c2, a02);
                a03 = Vector256.FusedMultiplyAdd(p0, c3, a03);
                a10 = Vector256.FusedMultiplyAdd(p1, c0, a10);
                a11 = Vector256.FusedMultiplyAdd(p1, c1, a11);
                a12 = Vector256.FusedMultiplyAdd(p1, c2, a12);
                a13 = Vector256.FusedMultiplyAdd(p1, c3, a13);
            }

            float* hn = halfNorms + cb;
            Vector256<int> at = lanes + Vector256.Create(cb);
            Keep(Vector256.Load(hn) - a00, at, ref best0, ref index0);
            Keep(Vector256.Load(hn) - a10, at, ref best1, ref index1);
            at += Vector256.Create(8);
            Keep(Vector256.Load(hn + 8) - a01, at, ref best0, ref index0);
            Keep(Vector256.Load(hn + 8) - a11, at, ref best1, ref index1);
            at += Vector256.Create(8);
            Keep(Vector256.Load(hn + 16) - a02, at, ref best0, ref index0);
            Keep(Vector256.Load(hn + 16) - a12, at, ref best1, ref index1);
            at += Vector256.Create(8);
            Keep(Vector256.Load(hn + 24) - a03, at, ref best0, ref index0);
            Keep(Vector256.Load(hn + 24) - a13, at, ref best1, ref index1);
        }

        (int i0, float v0) = Reduce(best0, index0);
        (int i1, float v1) = Reduce(best1, index1);
        return (i0, v0, i1, v1);
    }

    /// <summary>Per lane, keeps the smaller value; strict less-than keeps the earlier (lower) centroid on a tie.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Keep(Vector256<float> value, Vector256<int> at, ref Vector256<float> best, ref Vector256<int> index)
    {
        Vector256<float> less = Vector256.LessThan(value, best);
        best = Vector256.ConditionalSelect(less, value, best);
        index = Vector256.ConditionalSelect(less.AsInt32(), at, index);
    }

    /// <summary>The smallest lane value and its centroid (the lowest index among equal values).</summary>
    private static (int Index, float Value) Reduce(Vector256<float> best, Vector256<int> index)
    {
        int arg = index.GetElement(0);
        float value = best.GetElement(0);
        for (int lane = 1; lane < Vector256<float>.Count; lane++)
        {
            float v = best.GetElement(lane);
            int c = index.GetElement(lane);
            if (v < value || (v == value && c < arg))
            {
                value = v;
                arg = c;
            }
        }

        return (arg, value);
    }
}

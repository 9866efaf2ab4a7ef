using System.Buffers;

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
}

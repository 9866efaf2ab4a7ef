using System.Numerics.Tensors;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// Lloyd's k-means with k-means++ seeding (D² sampling), deterministic for a seed. D² seeding matters
/// here: isolated keys (needles, sinks) are far from everything and so likely to get a centroid of
/// their own, which keeps them findable by centroid search.
/// </summary>
internal static class KMeans
{
    /// <summary>Clusters points [n, dim] into k centroids [k, dim]; fills <paramref name="assignment"/> [n].</summary>
    public static float[] Train(ReadOnlySpan<float> points, int dim, int k, int iterations, ulong seed, Span<int> assignment)
    {
        int n = assignment.Length;
        k = Math.Max(1, Math.Min(k, n));
        var centroids = new float[k * dim];
        if (n == 0)
        {
            return centroids;
        }

        if (n > MaxPointsPerCentroid * (long)k)
        {
            return TrainOnSample(points, dim, k, iterations, seed, assignment);
        }

        Seed(points[..(n * dim)], dim, k, seed, centroids);

        var counts = new int[k];
        var sums = new double[k * dim];
        for (int it = 0; it <= iterations; it++)
        {
            KMeansAssignKernel.Assign(points, centroids, dim, assignment);
            if (it == iterations)
            {
                break;
            }

            Array.Clear(counts);
            Array.Clear(sums);
            for (int i = 0; i < n; i++)
            {
                int c = assignment[i];
                counts[c]++;
                ReadOnlySpan<float> p = points.Slice(i * dim, dim);
                Span<double> s = sums.AsSpan(c * dim, dim);
                for (int j = 0; j < dim; j++)
                {
                    s[j] += p[j];
                }
            }

            for (int c = 0; c < k; c++)
            {
                if (counts[c] == 0)
                {
                    // An empty cluster keeps its centroid; the next assignment may refill it.
                    continue;
                }

                double inv = 1.0 / counts[c];
                for (int j = 0; j < dim; j++)
                {
                    centroids[c * dim + j] = (float)(sums[c * dim + j] * inv);
                }
            }
        }

        return centroids;
    }

    /// <summary>
    /// Training points per centroid beyond which the centroids are trained on a uniform sample of that many per
    /// centroid and every point is assigned once at the end (Faiss's max_points_per_centroid, same value). Only the
    /// coarse level of an index is that large; training it on all keys made seeding stream every key once per
    /// centroid from memory. Isolated keys missed by the sample still get a centroid at the fine level, which is
    /// trained on all of its coarse cluster's keys.
    /// </summary>
    internal const int MaxPointsPerCentroid = 256;

    private static float[] TrainOnSample(ReadOnlySpan<float> points, int dim, int k, int iterations, ulong seed, Span<int> assignment)
    {
        int n = assignment.Length;
        int m = MaxPointsPerCentroid * k;

        // A partial Fisher–Yates shuffle picks m distinct points; sorted so the copy reads memory in order.
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
        }

        var rng = new SplitMix(seed ^ 0x5A3B1E);
        for (int i = 0; i < m; i++)
        {
            int j = i + (int)(rng.NextDouble() * (n - i));
            (order[i], order[j]) = (order[j], order[i]);
        }

        Array.Sort(order, 0, m);
        var sample = new float[(long)m * dim];
        for (int i = 0; i < m; i++)
        {
            points.Slice(order[i] * dim, dim).CopyTo(sample.AsSpan(i * dim, dim));
        }

        float[] centroids = Train(sample, dim, k, iterations, seed, new int[m]);
        KMeansAssignKernel.Assign(points[..(n * dim)], centroids, dim, assignment);
        return centroids;
    }

    /// <summary>
    /// k-means++ seeding: each next centroid is a point drawn with probability proportional to its squared distance
    /// to the nearest centroid so far. Distances come from one matrix-vector product per new centroid
    /// (‖x‖² − 2·x·c + ‖c‖², ‖x‖² computed once): a distance call per point cost ten times more per flop and made
    /// seeding most of an index build (k passes over all keys; at 256K keys it was 60% of the build).
    /// </summary>
    private static void Seed(ReadOnlySpan<float> points, int dim, int k, ulong seed, float[] centroids)
    {
        int n = points.Length / dim;
        var rng = new SplitMix(seed);
        var nearest = new float[n];
        var norms = new float[n];
        var dots = new float[n];
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<float> x = points.Slice(i * dim, dim);
            norms[i] = TensorPrimitives.Dot(x, x);
        }

        int pick = (int)(rng.NextDouble() * n);
        for (int c = 0; c < k; c++)
        {
            if (c > 0)
            {
                pick = Draw(nearest, ref rng);
            }

            Span<float> centroid = centroids.AsSpan(c * dim, dim);
            points.Slice(pick * dim, dim).CopyTo(centroid);
            if (c == k - 1)
            {
                break;
            }

            RowDotKernel.Scores(centroid, points, dots);
            float cc = TensorPrimitives.Dot(centroid, centroid);

            // dots ← max(0, ‖x‖² − 2·x·c + ‖c‖²): rounding can make a point's distance to itself slightly negative.
            TensorPrimitives.MultiplyAdd(dots, -2f, norms, dots);
            TensorPrimitives.Add(dots, cc, dots);
            TensorPrimitives.Max(dots, 0f, dots);
            if (c == 0)
            {
                dots.CopyTo(nearest, 0);
            }
            else
            {
                TensorPrimitives.Min(nearest, dots, nearest);
            }
        }
    }

    /// <summary>A point index drawn with probability proportional to <paramref name="weights"/> (uniform when all are zero).</summary>
    private static int Draw(float[] weights, ref SplitMix rng)
    {
        int n = weights.Length;
        double total = 0;
        foreach (float v in weights)
        {
            total += v;
        }

        if (total <= 0)
        {
            return (int)(rng.NextDouble() * n);
        }

        double target = rng.NextDouble() * total;
        double run = 0;
        int pick = 0;
        for (; pick < n - 1; pick++)
        {
            run += weights[pick];
            if (run >= target)
            {
                break;
            }
        }

        return pick;
    }

    /// <summary>SplitMix64: a tiny deterministic generator (the index must not depend on the workload library).</summary>
    internal struct SplitMix
    {
        private ulong _state;

        public SplitMix(ulong seed)
        {
            _state = seed;
        }

        public ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

        public double NextGaussian()
        {
            double u1 = 1.0 - NextDouble();
            double u2 = NextDouble();
            return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
    }
}

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

        var rng = new SplitMix(seed);
        var nearest = new float[n];
        int first = (int)(rng.NextDouble() * n);
        points.Slice(first * dim, dim).CopyTo(centroids);
        for (int i = 0; i < n; i++)
        {
            nearest[i] = Distance(points.Slice(i * dim, dim), centroids.AsSpan(0, dim));
        }

        for (int c = 1; c < k; c++)
        {
            double total = 0;
            foreach (float v in nearest)
            {
                total += v;
            }

            int pick = 0;
            if (total > 0)
            {
                double target = rng.NextDouble() * total;
                double run = 0;
                for (pick = 0; pick < n - 1; pick++)
                {
                    run += nearest[pick];
                    if (run >= target)
                    {
                        break;
                    }
                }
            }
            else
            {
                pick = (int)(rng.NextDouble() * n);
            }

            Span<float> centroid = centroids.AsSpan(c * dim, dim);
            points.Slice(pick * dim, dim).CopyTo(centroid);
            for (int i = 0; i < n; i++)
            {
                float dist = Distance(points.Slice(i * dim, dim), centroid);
                if (dist < nearest[i])
                {
                    nearest[i] = dist;
                }
            }
        }

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

    private static float Distance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float d = TensorPrimitives.Distance(a, b);
        return d * d;
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

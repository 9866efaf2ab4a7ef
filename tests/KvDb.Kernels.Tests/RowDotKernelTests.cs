using KvDb.Workload;

namespace KvDb.Kernels.Tests;

public sealed class RowDotKernelTests
{
    [Theory]
    [InlineData(7)]
    [InlineData(12)]
    [InlineData(16)]
    [InlineData(24)]
    [InlineData(128)]
    [InlineData(130)]
    public void Scores_and_gathered_scores_match_a_scalar_dot(int d)
    {
        const int n = 37;
        var rng = new DeterministicRandom((ulong)d);
        float[] rows = Random(ref rng, n * d);
        float[] query = Random(ref rng, d);
        var scores = new float[n];
        RowDotKernel.Scores(query, rows, scores);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(Dot(query, rows.AsSpan(i * d, d)), scores[i], 3e-4 * d);
        }

        int[] indices = [5, 0, 36, 5, 17, 2, 9];
        var gathered = new float[indices.Length];
        RowDotKernel.GatheredScores(query, rows, indices, gathered);
        for (int j = 0; j < indices.Length; j++)
        {
            Assert.Equal(scores[indices[j]], gathered[j], 1e-3);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => RowDotKernel.GatheredScores(query, rows, [n], new float[1]));
    }

    [Theory]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(48)]
    [InlineData(128)]
    [InlineData(130)]
    public void Gathered_bf16_scores_match_an_f64_dot_of_the_widened_rows(int d)
    {
        const int n = 37;
        var rng = new DeterministicRandom((ulong)(d + 500));
        float[] exact = Random(ref rng, n * d);
        float[] query = Random(ref rng, d);
        var rows = new ushort[n * d];
        ElementConversion.SingleToBFloat16(exact, rows);
        // Every 4-row group, the single-row tail, repeats and the last row.
        int[] indices = [5, 0, 36, 5, 17, 2, 9, 36, 1, 30, 30];
        var scores = new float[indices.Length];
        RowDotKernel.GatheredScoresBFloat16(query, rows, indices, scores);
        for (int j = 0; j < indices.Length; j++)
        {
            double expected = 0;
            double magnitude = 0;
            for (int i = 0; i < d; i++)
            {
                double k = ElementConversion.BFloat16ToSingle(rows[indices[j] * d + i]);
                expected += query[i] * k;
                magnitude += Math.Abs(query[i] * k);
            }

            // f32 accumulation of d products: error bounded by a few ulps of the absolute sum.
            Assert.Equal(expected, scores[j], 4e-7 * d * magnitude + 1e-6);
            // bf16 keeps 8 significant bits, so the dot stays within ~2^-8 of the f32 rows' dot.
            Assert.Equal(Dot(query, exact.AsSpan(indices[j] * d, d)), scores[j], magnitude / 128);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => RowDotKernel.GatheredScoresBFloat16(query, rows, [0, 1, 2, n], new float[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => RowDotKernel.GatheredScoresBFloat16(query, rows, [-1], new float[1]));
    }

    [Theory]
    [InlineData(200, 9, 24)]   // tiled: one partial tile of centroids
    [InlineData(37, 33, 128)]  // tiled: two tiles, an odd point count
    [InlineData(17, 64, 7)]    // tiled: a dimension below one vector
    [InlineData(5, 40, 16)]    // too few points to tile: row by row
    [InlineData(50, 3, 16)]    // too few centroids to tile
    public void KMeans_assignment_picks_the_nearest_centroid(int n, int k, int d)
    {
        var rng = new DeterministicRandom((ulong)(n * 100 + k));
        float[] points = Random(ref rng, n * d);
        float[] centroids = Random(ref rng, k * d);
        var assignment = new int[n];
        double objective = KMeansAssignKernel.Assign(points, centroids, d, assignment);
        double expectedObjective = 0;
        for (int i = 0; i < n; i++)
        {
            double best = double.MaxValue;
            int arg = -1;
            for (int c = 0; c < k; c++)
            {
                double dist = 0;
                for (int j = 0; j < d; j++)
                {
                    double diff = points[i * d + j] - centroids[c * d + j];
                    dist += diff * diff;
                }

                if (dist < best)
                {
                    best = dist;
                    arg = c;
                }
            }

            Assert.Equal(arg, assignment[i]);
            expectedObjective += best;
        }

        Assert.Equal(expectedObjective, objective, expectedObjective * 1e-4);
    }

    [Theory]
    [InlineData(1, 8, 20)]
    [InlineData(8, 10, 150)]
    [InlineData(13, 3, 7)]
    public void SimHash_codes_are_the_signs_of_the_projections(int count, int bits, int tables)
    {
        const int d = 40;
        var rng = new DeterministicRandom((ulong)(count * 1000 + bits));
        int planes = bits * tables;
        float[] planesT = Random(ref rng, d * planes);
        float[] rows = Random(ref rng, count * d);
        var codes = new ushort[count * tables];
        SimHashKernel.Hash(rows, count, d, planesT, bits, tables, codes);
        int mismatches = 0;
        for (int i = 0; i < count; i++)
        {
            for (int t = 0; t < tables; t++)
            {
                int expected = 0;
                for (int b = 0; b < bits; b++)
                {
                    double projection = 0;
                    for (int j = 0; j < d; j++)
                    {
                        projection += (double)rows[i * d + j] * planesT[j * planes + t * bits + b];
                    }

                    // A projection within rounding of 0 may legitimately land on either side.
                    if (Math.Abs(projection) < 1e-4)
                    {
                        expected |= codes[i * tables + t] & (1 << b);
                    }
                    else if (projection >= 0)
                    {
                        expected |= 1 << b;
                    }
                }

                mismatches += expected == codes[i * tables + t] ? 0 : 1;
            }
        }

        Assert.Equal(0, mismatches);
    }

    private static float[] Random(ref DeterministicRandom rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = (float)rng.NextGaussian();
        }

        return v;
    }

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++)
        {
            s += (double)a[i] * b[i];
        }

        return s;
    }
}

namespace KvDb.Kernels.Tests;

/// <summary>
/// The AVX2 segment loops on their own, against an f64 online softmax over the same bf16 rows: every segment
/// length up to a few K steps (odd ones end on a single-token step and a half-vector softmax tail) and every
/// number of query rows up to three four-row groups (the rest go through the one-row loops), folded twice so the
/// second fold rescales the state of the first. Runs only where AVX2 + FMA exist (on an AVX-512 machine these
/// loops are otherwise reached only with DOTNET_EnableAVX512=0).
/// </summary>
public sealed unsafe class FusedAttentionSegment256Tests
{
    public static TheoryData<int, int> Cases()
    {
        var data = new TheoryData<int, int>();
        foreach (int count in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 17, 64 })
        {
            foreach (int rows in new[] { 1, 3, 4, 5, 8, 12 })
            {
                data.Add(count, rows);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Folds_two_segments_like_the_f64_softmax(int count, int rows)
    {
        Skip.IfNot(FusedAttentionSegment256.IsSupported, "needs AVX2 + FMA");
        const int d = 64;
        var rng = new Random((count * 31) + rows);

        // Two segments of bf16 keys and values; query rows f32, already scaled (one large row shifts the max).
        int total = 2 * count;
        ushort[] keys = RandomBf16(rng, total * d, 1f);
        ushort[] values = RandomBf16(rng, total * d, 1f);
        var q = new float[rows * d];
        for (int i = 0; i < q.Length; i++)
        {
            q[i] = (float)((rng.NextDouble() * 2) - 1) * (i < d ? 2f : 0.5f);
        }

        // The loops take queries and accumulators in the bf16 element order.
        var qStored = new float[q.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < d; i++)
            {
                qStored[(r * d) + BFloat16RowFormat.StoredIndex(i)] = q[(r * d) + i];
            }
        }

        var acc = new float[rows * d];
        float[] max = new float[rows];
        Array.Fill(max, float.NegativeInfinity);
        var sum = new float[rows];
        var scores = new float[rows * count];
        fixed (ushort* pk = keys)
        fixed (ushort* pv = values)
        fixed (float* pq = qStored)
        fixed (float* pAcc = acc)
        fixed (float* pMax = max)
        fixed (float* pSum = sum)
        fixed (float* pScores = scores)
        {
            int rowBytes = d * sizeof(ushort);
            byte* k0 = (byte*)pk;
            byte* v0 = (byte*)pv;
            byte* k1 = k0 + ((long)count * rowBytes);
            byte* v1 = v0 + ((long)count * rowBytes);
            FusedAttentionSegment256.Run<BFloat16RowFormat>(k0, v0, k1, v1, count, d, rows, pq, pAcc, pMax, pSum, pScores, count);
            FusedAttentionSegment256.Run<BFloat16RowFormat>(k1, v1, null, null, count, d, rows, pq, pAcc, pMax, pSum, pScores, count);
        }

        for (int r = 0; r < rows; r++)
        {
            // f64 reference over all 2·count rows.
            var s = new double[total];
            double m = double.NegativeInfinity;
            for (int j = 0; j < total; j++)
            {
                double dot = 0;
                for (int i = 0; i < d; i++)
                {
                    dot += (double)q[(r * d) + i] * Bf16(keys[(j * d) + i]);
                }

                s[j] = dot;
                m = Math.Max(m, dot);
            }

            double z = 0;
            var o = new double[d];
            for (int j = 0; j < total; j++)
            {
                double w = Math.Exp(s[j] - m);
                z += w;
                for (int i = 0; i < d; i++)
                {
                    o[i] += w * Bf16(values[(j * d) + i]);
                }
            }

            double lse = max[r] + Math.Log(sum[r]);
            Assert.True(Math.Abs(lse - (m + Math.Log(z))) <= 1e-5, $"row {r}: lse {lse} vs {m + Math.Log(z)}");
            for (int i = 0; i < d; i++)
            {
                double got = acc[(r * d) + BFloat16RowFormat.StoredIndex(i)] / sum[r];
                Assert.True(Math.Abs(got - (o[i] / z)) <= 1e-5, $"row {r}, element {i}: {got} vs {o[i] / z}");
            }
        }
    }

    private static ushort[] RandomBf16(Random rng, int n, float scale)
    {
        var x = new ushort[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)((rng.NextDouble() * 2) - 1) * scale) >> 16);
        }

        return x;
    }

    private static double Bf16(ushort x) => BitConverter.UInt32BitsToSingle((uint)x << 16);
}

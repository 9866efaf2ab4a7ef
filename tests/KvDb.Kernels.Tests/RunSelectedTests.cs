using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Kernels.Tests;

/// <summary>Selection-restricted exact attention (the gathered fast path) against the f64 reference over each KV head's own selection.</summary>
public sealed class RunSelectedTests
{
    [Theory]
    [InlineData(KvDType.F32, 128)]
    [InlineData(KvDType.BF16, 128)]
    [InlineData(KvDType.F16, 64)]
    [InlineData(KvDType.BF16, 40)]
    public void Each_kv_head_attends_exactly_its_own_selection(KvDType dtype, int headDim)
    {
        const int tokens = 700;
        const int hkv = 4;
        const int hq = 8;
        const int capacity = 64;
        var w = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = hkv, NumQueryHeads = hq, HeadDim = headDim, KeyRank = 8, RecentWindow = 32 });
        float[] keysF = ElementConversion.ToSingle(dtype, w.KeyBytes(dtype, 0, tokens));
        float[] valuesF = ElementConversion.ToSingle(dtype, w.ValueBytes(dtype, 0, tokens));
        using var layer = new NativeKvBlocks(dtype, w.KeyBytes(dtype, 0, tokens), w.ValueBytes(dtype, 0, tokens), hkv, headDim, capacity);
        var geometry = new AttentionGeometry(hq, hkv, headDim, capacity, dtype, 1f / MathF.Sqrt(headDim));

        // Runs that start, end and cross block boundaries; head 3 selects nothing.
        long[][] selections =
        [
            [0, 1, 2, 3, 60, 61, 62, 63, 64, 65, 66, 300, 699],
            [127, 128, 500, 501, 502, 503, 504],
            Range(190, 330),
            [],
        ];
        var runs = new List<KvRowRun>();
        var offsets = new int[hkv + 1];
        for (int h = 0; h < hkv; h++)
        {
            Assert.True(KvRowRun.TryFromPositions(layer.Blocks, selections[h], runs));
            offsets[h + 1] = runs.Count;
        }

        float[] queries = w.Queries(2, 17);
        var output = new float[queries.Length];
        var lse = new float[2 * hq];
        AttentionCounters c = ExactAttentionKernel.RunSelected(geometry, layer.Blocks, runs.ToArray(), offsets, queries, 2, output, lse);
        long selected = 0;
        foreach (long[] s in selections)
        {
            selected += s.Length;
        }

        Assert.Equal(selected * 2, c.TokensAttended);
        Assert.Equal(selected * 2 * geometry.RowBytes, c.BytesRead);

        int group = hq / hkv;
        for (int h = 0; h < hkv; h++)
        {
            (float[] k, float[] v) = Gather(keysF, valuesF, selections[h], hkv * headDim);
            (double[] refOut, double[] refLse) = ReferenceAttention.Compute(k, v, queries, 2, hq, hkv, headDim, geometry.Scale);
            for (int t = 0; t < 2; t++)
            {
                for (int gi = 0; gi < group; gi++)
                {
                    int head = t * hq + h * group + gi;
                    if (selections[h].Length == 0)
                    {
                        Assert.True(float.IsNegativeInfinity(lse[head]));
                        Assert.All(output.AsSpan(head * headDim, headDim).ToArray(), x => Assert.Equal(0f, x));
                        continue;
                    }

                    double rel = ReferenceAttention.RelativeL2(output.AsSpan(head * headDim, headDim), refOut.AsSpan(head * headDim, headDim));
                    Assert.True(rel <= 1e-5, $"head {head}: rel-L2 {rel:E2}");
                    Assert.True(Math.Abs(lse[head] - refLse[head]) <= 1e-4, $"head {head}: lse {lse[head]} vs {refLse[head]}");
                }
            }
        }
    }

    [Fact]
    public void Unsorted_or_missing_positions_are_refused_without_partial_runs()
    {
        var blocks = new[] { new KvBlockRef(1, 1, 64, 0), new KvBlockRef(1, 1, 10, 64) };
        var runs = new List<KvRowRun> { new(0, 0, 1) };
        Assert.False(KvRowRun.TryFromPositions(blocks, [5, 4], runs));
        Assert.False(KvRowRun.TryFromPositions(blocks, [3, 74], runs));
        Assert.False(KvRowRun.TryFromPositions(blocks, [3, 3], runs));
        Assert.Single(runs);
        Assert.True(KvRowRun.TryFromPositions(blocks, [62, 63, 64, 65, 73], runs));
        Assert.Equal([new KvRowRun(0, 0, 1), new KvRowRun(0, 62, 2), new KvRowRun(1, 0, 2), new KvRowRun(1, 9, 1)], runs);
    }

    private static long[] Range(long from, long to)
    {
        var r = new long[to - from];
        for (int i = 0; i < r.Length; i++)
        {
            r[i] = from + i;
        }

        return r;
    }

    private static (float[] Keys, float[] Values) Gather(float[] keys, float[] values, long[] positions, int tokenFloats)
    {
        var k = new float[positions.Length * tokenFloats];
        var v = new float[k.Length];
        for (int i = 0; i < positions.Length; i++)
        {
            Array.Copy(keys, positions[i] * tokenFloats, k, (long)i * tokenFloats, tokenFloats);
            Array.Copy(values, positions[i] * tokenFloats, v, (long)i * tokenFloats, tokenFloats);
        }

        return (k, v);
    }
}

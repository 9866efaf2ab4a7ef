using Xunit.Abstractions;

namespace KvDb.Workload.Tests;

/// <summary>
/// Heads of different peakedness in one workload: a peaked head's mass sits on a few needles and sinks, a topical
/// head's on every token of its query's topics (heavy-tailed: tens to thousands of tokens, varying per query), a
/// diffuse head's on a large share of the context. Measured with an f64 softmax over every token.
/// </summary>
public class TopicalHeadTests(ITestOutputHelper log)
{
    private const int Tokens = 16384;

    [Fact]
    public void Heads_span_peaked_topical_and_diffuse_attention()
    {
        var options = new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 4, NumQueryHeads = 8, DiffuseHeadFraction = 0.25, TopicalHeadFraction = 0.5 };
        var w = new SyntheticWorkload(options);
        Assert.Equal([true, false, false, false], Enumerable.Range(0, 4).Select(w.IsDiffuseHead));
        Assert.Equal([false, true, true, false], Enumerable.Range(0, 4).Select(w.IsTopicalHead));

        const int queries = 16;
        int[][] needed = TokensForMass(w, queries, 0.9);
        for (int kv = 0; kv < 4; kv++)
        {
            log.WriteLine($"head {kv}: tokens for 90% of the mass per query: {string.Join(", ", needed[kv].Order())}");
        }

        Assert.All(needed[0], n => Assert.True(n > Tokens / 4, $"diffuse head: {n}"));
        Assert.All(needed[3], n => Assert.True(n <= 16, $"peaked head: {n}"));
        foreach (int kv in new[] { 1, 2 })
        {
            int[] sorted = [.. needed[kv].Order()];
            int median = sorted[sorted.Length / 2];
            Assert.InRange(median, 50, 8000);
            Assert.True(sorted[^1] >= 4 * sorted[0], $"head {kv}: peakedness should vary across queries ({sorted[0]}..{sorted[^1]})");
        }
    }

    [Fact]
    public void Topics_follow_a_zipf_law_and_leave_other_heads_alone()
    {
        var topical = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 4, NumQueryHeads = 8, TopicalHeadFraction = 0.5 });
        var plain = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 4, NumQueryHeads = 8 });
        var counts = new int[64];
        for (long p = 0; p < Tokens; p++)
        {
            counts[topical.TopicOf(1, p)]++;
        }

        // Weight 1/r^1.1: topic 0 about 2.1× topic 1 and ~20× topic 15.
        Assert.InRange(counts[0] / (double)counts[1], 1.8, 2.5);
        Assert.InRange(counts[0] / (double)counts[15], 12, 35);

        // A head that is not topical gets exactly the keys and queries it had before.
        var a = new float[256 * 4 * 128];
        var b = new float[a.Length];
        topical.FillKeys(100, 256, a);
        plain.FillKeys(100, 256, b);
        float[] qa = topical.Queries(2, 5);
        float[] qb = plain.Queries(2, 5);
        for (int t = 0; t < 256; t++)
        {
            Assert.Equal(b.AsSpan(((t * 4) + 3) * 128, 128).ToArray(), a.AsSpan(((t * 4) + 3) * 128, 128).ToArray());
        }

        for (int t = 0; t < 2; t++)
        {
            Assert.False(topical.IsTopicalHead(3));
            Assert.Equal(qb.AsSpan(((t * 8) + 6) * 128, 2 * 128).ToArray(), qa.AsSpan(((t * 8) + 6) * 128, 2 * 128).ToArray()); // KV head 3's query heads
        }
    }

    private static int[][] TokensForMass(SyntheticWorkload w, int queries, double share)
    {
        SyntheticWorkloadOptions o = w.Options;
        int h = o.NumKvHeads;
        int hq = o.NumQueryHeads;
        int d = o.HeadDim;
        int group = hq / h;
        var keys = new float[Tokens * h * d];
        w.FillKeys(0, Tokens, keys);
        float[] q = w.Queries(queries, 11);
        double scale = 1 / Math.Sqrt(d);
        var result = new int[h][];
        var scores = new double[Tokens];
        for (int kv = 0; kv < h; kv++)
        {
            result[kv] = new int[queries];
            for (int t = 0; t < queries; t++)
            {
                int qOffset = ((t * hq) + (kv * group)) * d;
                double max = double.NegativeInfinity;
                for (int j = 0; j < Tokens; j++)
                {
                    double dot = 0;
                    int kOffset = ((j * h) + kv) * d;
                    for (int i = 0; i < d; i++)
                    {
                        dot += (double)q[qOffset + i] * keys[kOffset + i];
                    }

                    scores[j] = dot * scale;
                    max = Math.Max(max, scores[j]);
                }

                double total = 0;
                for (int j = 0; j < Tokens; j++)
                {
                    scores[j] = Math.Exp(scores[j] - max);
                    total += scores[j];
                }

                double[] sorted = [.. scores.OrderDescending()];
                double acc = 0;
                int n = 0;
                while (acc < share * total)
                {
                    acc += sorted[n++];
                }

                result[kv][t] = n;
            }
        }

        return result;
    }
}

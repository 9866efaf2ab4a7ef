using Xunit.Abstractions;

namespace KvDb.Workload.Tests;

/// <summary>
/// The workload's promise to retrieval benchmarks: on a focused (non-diffuse) head, every planted needle is
/// among the highest-scoring keys for the generated queries, so a top-k index that misses it is at fault.
/// </summary>
public class NeedleRankTests(ITestOutputHelper log)
{
    private const int Tokens = 8192;
    private const double TopFraction = 0.01;

    [Theory]
    [InlineData(42UL, 1UL, 8)]
    [InlineData(42UL, 2UL, 8)]
    [InlineData(7UL, 3UL, 8)]
    [InlineData(42UL, 7UL, 2)] // the index tests' and bench's layout: 2 KV heads × 4 query heads, query seed 7
    public void Needles_RankInTopOnePercent_OnFocusedHeads(ulong seed, ulong querySeed, int kvHeads)
    {
        var options = new SyntheticWorkloadOptions { Tokens = Tokens, Seed = seed, NumKvHeads = kvHeads, NumQueryHeads = 4 * kvHeads };
        var w = new SyntheticWorkload(options);
        int hkv = options.NumKvHeads;
        int hq = options.NumQueryHeads;
        int d = options.HeadDim;
        int group = hq / hkv;
        const int numQueries = 2;
        var keys = new float[Tokens * hkv * d];
        w.FillKeys(0, Tokens, keys);
        float[] queries = w.Queries(numQueries, querySeed);
        double scale = 1 / Math.Sqrt(d);
        int allowedRank = (int)(Tokens * TopFraction);
        var scores = new double[Tokens];
        int worst = 0;
        int focused = 0;

        for (int kv = 0; kv < hkv; kv++)
        {
            if (w.IsDiffuseHead(kv))
            {
                continue;
            }

            focused++;
            for (int t = 0; t < numQueries; t++)
            {
                for (int g = 0; g < group; g++)
                {
                    int qOffset = (t * hq + kv * group + g) * d;
                    for (int j = 0; j < Tokens; j++)
                    {
                        int kOffset = (j * hkv + kv) * d;
                        double dot = 0;
                        for (int i = 0; i < d; i++)
                        {
                            dot += (double)queries[qOffset + i] * keys[kOffset + i];
                        }

                        scores[j] = scale * dot;
                    }

                    foreach (long needle in w.NeedlePositions(kv))
                    {
                        int rank = 0;
                        for (int j = 0; j < Tokens; j++)
                        {
                            rank += scores[j] > scores[needle] ? 1 : 0;
                        }

                        worst = Math.Max(worst, rank);
                        Assert.True(rank < allowedRank, $"needle at {needle} of KV head {kv}, query head {kv * group + g}, token {t}: rank {rank} (score {scores[needle]:F2}) not in top {allowedRank}");
                    }
                }
            }
        }

        Assert.True(focused > 0, "no focused heads: the test checked nothing");
        log.WriteLine($"worst needle rank {worst} of {Tokens} (allowed < {allowedRank})");
    }
}

using KvDb.Kernels;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.Index.Tests;

public sealed class ExploreMassTests
{
    private readonly ITestOutputHelper _out;

    public ExploreMassTests(ITestOutputHelper output)
    {
        _out = output;
    }

    [Fact]
    public void Mass()
    {
        if (Environment.GetEnvironmentVariable("EXPLORE_MASS") is null)
        {
            return;
        }

        var o = new SyntheticWorkloadOptions { Tokens = 16384, NumKvHeads = 2, NumQueryHeads = 8 };
        var h = new IndexQualityHarness(o, queries: 2, sampleQueries: 0);
        int n = h.Tokens;
        int d = h.Dimension;
        foreach (int kv in h.KvHeads)
        {
            float[] keys = h.Keys(kv);
            float[] q = h.Queries(kv);
            var s = new float[n];
            for (int qi = 0; qi < q.Length / d; qi++)
            {
                RowDotKernel.Scores(q.AsSpan(qi * d, d), keys, s);
                double max = s.Max() * h.Scale;
                double[] p = s.Select(x => Math.Exp(x * h.Scale - max)).ToArray();
                double sum = p.Sum();
                double sinks = p.Take(4).Sum() / sum;
                double recent = p.Skip(n - 256).Sum() / sum;
                double needles = h.Workload.NeedlePositions(kv).Sum(x => p[x]) / sum;
                var sorted = p.OrderByDescending(x => x).ToArray();
                double top1 = sorted.Take(n / 100).Sum() / sum;
                double top5 = sorted.Take(n / 20).Sum() / sum;
                _out.WriteLine($"kv{kv} q{qi}: sinks={sinks:F3} recent={recent:F3} needles={needles:F3} top1%={top1:F3} top5%={top5:F3} rest={1 - sinks - recent - needles:F3}");
            }
        }
    }
}

using KvDb.Kernels;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.Index.Tests;

public sealed class ExploreLshTests
{
    private readonly ITestOutputHelper _out;

    public ExploreLshTests(ITestOutputHelper output)
    {
        _out = output;
    }

    [Fact]
    public void Lsh()
    {
        string? specs = Environment.GetEnvironmentVariable("EXPLORE_LSH");
        if (specs is null)
        {
            return;
        }

        var o = new SyntheticWorkloadOptions { Tokens = 16384, NumKvHeads = 2, NumQueryHeads = 8 };
        var h = new IndexQualityHarness(o, queries: 4, sampleQueries: 512);
        int n = h.Tokens;
        int d = h.Dimension;
        foreach (string spec in specs.Split(';'))
        {
            foreach (string extra in new[] { "none", "graph" })
            {
                double err = 0, frac = 0, maxErr = 0;
                int count = 0;
                foreach (int kv in h.KvHeads)
                {
                    var lsh = (LshIndex)h.Build(spec.Replace("+noq", ""), kv, out _);
                    if (spec.EndsWith("+noq")) { lsh = (LshIndex)IndexFactory.Create(spec.Replace("+noq", ""), d); lsh.Build(h.Keys(kv), h.Positions); }
                    IKeyIndex? graph = extra == "graph" ? h.Build("graph", kv, out _) : null;
                    var est = new LshSamplingEstimator(lsh);
                    float[] q = h.Queries(kv);
                    var output = new float[d];
                    var found = new long[n / 100];
                    for (int qi = 0; qi < q.Length / d; qi++)
                    {
                        var exact = new SortedSet<int> { 0, 1, 2, 3 };
                        if (graph is not null)
                        {
                            int got = graph.Candidates(q.AsSpan(qi * d, d), new SearchParameters(n / 100), found, out _);
                            for (int i = 0; i < got; i++) exact.Add((int)found[i]);
                        }

                        int attended = est.Estimate(q.AsSpan(qi * d, d), h.Scale, h.Keys(kv), h.Values(kv), exact.ToArray(), output, out float lse);
                        (double[] refOut, double refLse) = h.Exact(kv, qi);
                        double e = ReferenceAttention.RelativeL2(output, refOut);
                        err += e; maxErr = Math.Max(maxErr, e);
                        frac += (double)attended / n;
                        count++;
                    }
                }

                _out.WriteLine($"{spec} exact+{extra}: meanRelL2={err / count:F4} maxRelL2={maxErr:F4} tokens={frac / count:F4}");
            }
        }
    }
}

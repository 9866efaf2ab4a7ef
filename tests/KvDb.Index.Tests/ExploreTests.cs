using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.Index.Tests;

public sealed class ExploreTests
{
    private readonly ITestOutputHelper _out;

    public ExploreTests(ITestOutputHelper output)
    {
        _out = output;
    }

    [Fact]
    public void Explore()
    {
        string? specs = Environment.GetEnvironmentVariable("EXPLORE_SPECS");
        if (specs is null)
        {
            return;
        }

        int tokens = int.Parse(Environment.GetEnvironmentVariable("EXPLORE_TOKENS") ?? "16384");
        var h = new IndexQualityHarness(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = 2, NumQueryHeads = 8 }, queries: 8, sampleQueries: int.Parse(Environment.GetEnvironmentVariable("EXPLORE_SAMPLES") ?? "512"));
        foreach (string spec in specs.Split(';'))
        {
            var sweep = new List<SearchParameters>();
            foreach (string p in (Environment.GetEnvironmentVariable("EXPLORE_PARAMS") ?? "164").Split(' '))
            {
                int[] v = p.Split('/').Select(int.Parse).ToArray();
                sweep.Add(new SearchParameters(v[0], v.Length > 1 ? v[1] : 0, v.Length > 2 ? v[2] : 0));
            }

            foreach (QualityReport r in h.Evaluate(spec, sweep))
            {
                _out.WriteLine($"{r.Spec} {r.Parameters} scanned={r.ScannedFraction:F4} attended={r.AttendedFraction:F4} recall={r.Recall:F3} mass={r.Mass:F3} build_us_per_1k={r.BuildMicrosPer1K:F0}");
            }
        }
    }
}

namespace KvDb.Index.Tests;

/// <summary>
/// Planted needles are the keys every query of their head is after. Each family must return every needle
/// that is in the query's exact top-1% (a needle's score has query-dependent noise, so a few needles are
/// not top for every query; those are no failure of an index) at its default budget.
/// </summary>
[Collection(WorkloadCollection.Name)]
public sealed class NeedleTests
{
    private readonly WorkloadFixture _fixture;

    public NeedleTests(WorkloadFixture fixture)
    {
        _fixture = fixture;
    }

    [Theory]
    [InlineData("block")]
    [InlineData("centroid:L2")]
    [InlineData("lsh")]
    [InlineData("graph")]
    public void Every_top_needle_is_found_at_the_default_budget(string spec)
    {
        IndexQualityHarness h = _fixture.Harness;
        int d = h.Dimension;
        SearchParameters parameters = IndexFactory.DefaultParameters(spec, h.Tokens);
        var positions = new long[parameters.Budget];
        int checkedNeedles = 0;
        foreach (int kv in h.KvHeads)
        {
            IKeyIndex index = _fixture.Index(spec, kv);
            float[] queries = h.Queries(kv);
            for (int q = 0; q < queries.Length / d; q++)
            {
                int got = index.Candidates(queries.AsSpan(q * d, d), parameters, positions, out _);
                var found = new HashSet<long>(positions[..got]);
                foreach (long needle in h.Workload.NeedlePositions(kv))
                {
                    if (h.InExactTopK(kv, q, needle))
                    {
                        checkedNeedles++;
                        Assert.True(found.Contains(needle), $"{spec}: needle at {needle} (KV head {kv}, query {q}) missing from {got} candidates");
                    }
                }
            }
        }

        Assert.True(checkedNeedles > 100, $"only {checkedNeedles} needles were in a top-1% list; the workload changed");
    }
}

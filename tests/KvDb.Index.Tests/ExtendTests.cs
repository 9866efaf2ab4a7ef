namespace KvDb.Index.Tests;

/// <summary>An index built on a prefix and extended with the rest must still find what is in the rest.</summary>
[Collection(WorkloadCollection.Name)]
public sealed class ExtendTests
{
    private readonly WorkloadFixture _fixture;

    public ExtendTests(WorkloadFixture fixture)
    {
        _fixture = fixture;
    }

    [Theory]
    [InlineData("block")]
    [InlineData("centroid:L2")]
    [InlineData("lsh")]
    [InlineData("graph")]
    public void Needles_appended_after_the_build_are_found(string spec)
    {
        IndexQualityHarness h = _fixture.Harness;
        int d = h.Dimension;
        int n = h.Tokens;
        int half = n / 2;
        foreach (int kv in h.KvHeads)
        {
            float[] keys = h.Keys(kv);
            long[] positions = h.Positions;
            using IKeyIndex index = IndexFactory.Create(spec, d);
            if (index is IQueryGuidedIndex guided)
            {
                guided.AddSampleQueries(h.Samples(kv));
            }

            index.Build(keys.AsSpan(0, half * d), positions.AsSpan(0, half));
            index.Extend(keys.AsSpan(half * d), positions.AsSpan(half));
            Assert.Equal(n, index.Count);

            SearchParameters parameters = IndexFactory.DefaultParameters(spec, n);
            var found = new long[parameters.Budget];
            float[] queries = h.Queries(kv);
            int hits = 0;
            int total = 0;
            for (int q = 0; q < queries.Length / d; q++)
            {
                int got = index.Candidates(queries.AsSpan(q * d, d), parameters, found, out _);
                var set = new HashSet<long>(found[..got]);
                foreach (long needle in h.Workload.NeedlePositions(kv))
                {
                    if (needle >= half && h.InExactTopK(kv, q, needle))
                    {
                        total++;
                        hits += set.Contains(needle) ? 1 : 0;
                    }
                }
            }

            Assert.True(total > 0);
            Assert.True(hits >= 0.9 * total, $"{spec}: {hits} of {total} appended top needles found");
        }
    }
}

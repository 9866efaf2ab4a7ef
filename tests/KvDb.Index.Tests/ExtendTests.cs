using KvDb.TestKit;

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

    [Fact]
    public void Lsh_buckets_grown_by_two_extends_equal_those_rebuilt_from_the_saved_codes()
    {
        // LSH keeps only its bucket lists (no per-row codes): Extend merges new rows into them and Save reads the
        // codes back from them; Load rebuilds the lists from those codes in one pass. Both must agree exactly.
        IndexQualityHarness h = _fixture.Harness;
        int d = h.Dimension;
        int n = h.Tokens;
        int kv = h.KvHeads[0];
        float[] keys = h.Keys(kv);
        long[] positions = h.Positions;
        using IKeyIndex grown = IndexFactory.Create("lsh", d);
        ((IQueryGuidedIndex)grown).AddSampleQueries(h.Samples(kv));
        grown.Build(keys.AsSpan(0, n / 2 * d), positions.AsSpan(0, n / 2));
        grown.Extend(keys.AsSpan(n / 2 * d, n / 4 * d), positions.AsSpan(n / 2, n / 4));
        grown.Extend(keys.AsSpan((n / 2 + n / 4) * d), positions.AsSpan(n / 2 + n / 4));

        using var saved = new MemoryStream();
        grown.Save(saved);
        saved.Position = 0;
        using IKeyIndex loaded = IndexFactory.Load(saved);
        using var resaved = new MemoryStream();
        loaded.Save(resaved);
        Assert.Equal(saved.ToArray(), resaved.ToArray());

        var parameters = new SearchParameters(n / 50);
        var a = new long[parameters.Budget];
        var b = new long[parameters.Budget];
        float[] queries = h.Queries(kv);
        for (int q = 0; q < queries.Length / d; q++)
        {
            ReadOnlySpan<float> query = queries.AsSpan(q * d, d);
            int gotA = grown.Candidates(query, parameters, a, out SearchStats statsA);
            int gotB = loaded.Candidates(query, parameters, b, out SearchStats statsB);
            Assert.Equal(a[..gotA], b[..gotB]);
            Assert.Equal(statsA.VectorsScanned, statsB.VectorsScanned);
        }
    }
}

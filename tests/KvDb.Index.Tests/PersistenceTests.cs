using KvDb.TestKit;

namespace KvDb.Index.Tests;

/// <summary>Save then Load must give an index that answers every query with identical candidates.</summary>
[Collection(WorkloadCollection.Name)]
public sealed class PersistenceTests
{
    private readonly WorkloadFixture _fixture;

    public PersistenceTests(WorkloadFixture fixture)
    {
        _fixture = fixture;
    }

    [Theory]
    [InlineData("block")]
    [InlineData("centroid:L2")]
    [InlineData("lsh")]
    [InlineData("graph")]
    public void Round_trip_gives_identical_candidates(string spec) => RoundTrip(spec);

    [SkippableTheory]
    [InlineData("faiss:HNSW16")]
    [InlineData("faiss:IVF")]
    public void Faiss_round_trip_gives_identical_candidates(string spec)
    {
        Skip.IfNot(FaissIndex.IsAvailable, "libkvfaiss.so is not built (run src/Index/native/build.sh)");
        RoundTrip(spec);
    }

    [Fact]
    public void Load_rejects_a_stream_that_is_not_an_index()
    {
        using var stream = new MemoryStream([1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.Throws<InvalidDataException>(() => IndexFactory.Load(stream));
    }

    private void RoundTrip(string spec)
    {
        IndexQualityHarness h = _fixture.Harness;
        int kv = h.KvHeads[1];
        int d = h.Dimension;
        IKeyIndex original = _fixture.Index(spec, kv);
        using var stream = new MemoryStream();
        original.Save(stream);
        stream.Position = 0;
        using IKeyIndex loaded = IndexFactory.Load(stream);
        Assert.Equal(original.Spec, loaded.Spec);
        Assert.Equal(original.Count, loaded.Count);
        SearchParameters parameters = IndexFactory.DefaultParameters(spec, h.Tokens);
        var a = new long[parameters.Budget];
        var b = new long[parameters.Budget];
        float[] queries = h.Queries(kv);
        for (int q = 0; q < queries.Length / d; q++)
        {
            int na = original.Candidates(queries.AsSpan(q * d, d), parameters, a, out SearchStats sa);
            int nb = loaded.Candidates(queries.AsSpan(q * d, d), parameters, b, out SearchStats sb);
            Assert.Equal(na, nb);
            Assert.Equal(a[..na], b[..nb]);
            Assert.Equal(sa, sb);
        }
    }
}

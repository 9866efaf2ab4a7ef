namespace KvDb.Index.Tests;

public sealed class IndexSpecTests
{
    [Fact]
    public void Parse_reads_family_key_values_and_faiss_style_tokens()
    {
        IndexSpec s = IndexSpec.Parse("LSH:K=8, L=100");
        Assert.Equal("lsh", s.Family);
        Assert.Equal(8, s.Int("K", 0));
        Assert.Equal(100, s.Int("L", 0));
        Assert.Equal(2, s.Int("T", 2));

        IndexSpec c = IndexSpec.Parse("centroid:L2");
        Assert.Equal(2, c.Int("L", 1));

        IndexSpec f = IndexSpec.Parse("faiss:HNSW32,ef=64");
        Assert.Equal(32, f.Int("HNSW", 0));
        Assert.Equal(64, f.Int("ef", 0));
        Assert.True(IndexSpec.Parse("faiss:IVF").Has("IVF"));
    }

    [Theory]
    [InlineData("block", typeof(BlockSummaryIndex))]
    [InlineData("block:B=32", typeof(BlockSummaryIndex))]
    [InlineData("centroid:L2", typeof(CentroidIndex))]
    [InlineData("centroid:L=1,C=16", typeof(CentroidIndex))]
    [InlineData("lsh:K=8,L=100", typeof(LshIndex))]
    [InlineData("graph", typeof(AttentionGraphIndex))]
    public void Factory_creates_the_named_family(string spec, Type type)
    {
        using IKeyIndex index = IndexFactory.Create(spec, 64);
        Assert.IsType(type, index);
        Assert.Equal(64, index.Dimension);
        Assert.Equal(0, index.Count);

        // The canonical spec re-creates an equivalent index.
        using IKeyIndex again = IndexFactory.Create(index.Spec, 64);
        Assert.Equal(index.Spec, again.Spec);
    }

    [Theory]
    [InlineData("tree")]
    [InlineData("lsh:Z=3")]
    [InlineData("lsh:K=x")]
    [InlineData("faiss:HNSW32,IVF64")]
    [InlineData("block:=4")]
    public void Factory_rejects_bad_specs_with_a_message(string spec)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => IndexFactory.Create(spec, 64));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
    }

    [Fact]
    public void Every_family_answers_an_empty_index_with_no_candidates()
    {
        foreach (string spec in new[] { "block", "centroid:L2", "lsh", "graph" })
        {
            using IKeyIndex index = IndexFactory.Create(spec, 16);
            index.Build(ReadOnlySpan<float>.Empty, ReadOnlySpan<long>.Empty);
            var positions = new long[8];
            Assert.Equal(0, index.Candidates(new float[16], 8, positions));
        }
    }
}

namespace KvDb.Index.Tests;

/// <summary>The family registry is the one source of constructors, accepted keys and format versions.</summary>
public sealed class IndexFamiliesTests
{
    [Theory]
    [InlineData("block", typeof(BlockSummaryIndex), 1)]
    [InlineData("centroid:L2", typeof(CentroidIndex), 2)]
    [InlineData("lsh", typeof(LshIndex), 1)]
    [InlineData("graph", typeof(AttentionGraphIndex), 2)]
    public void Each_family_is_created_saved_and_loaded_through_the_registry(string spec, Type type, int version)
    {
        const int d = 16;
        var rng = new Random(3);
        var keys = new float[300 * d];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = (float)(rng.NextDouble() - 0.5);
        }

        long[] positions = Enumerable.Range(0, 300).Select(i => (long)i * 2).ToArray();
        using IKeyIndex index = IndexFactory.Create(spec, d);
        Assert.IsType(type, index);
        index.Build(keys, positions);
        using var stream = new MemoryStream();
        index.Save(stream);

        // Header: magic, then the family's registered payload version.
        byte[] bytes = stream.ToArray();
        Assert.Equal(version, BitConverter.ToInt32(bytes, 4));
        Assert.Equal(version, IndexFamilies.Get(IndexSpec.Parse(spec).Family).FormatVersion);
        stream.Position = 0;
        using IKeyIndex loaded = IndexFactory.Load(stream);
        Assert.IsType(type, loaded);
        Assert.Equal(index.Spec, loaded.Spec);
        Assert.Equal(300, loaded.Count);
    }

    [Fact]
    public void A_file_of_another_payload_version_is_refused()
    {
        using IKeyIndex index = IndexFactory.Create("block", 8);
        index.Build(new float[16 * 8], Enumerable.Range(0, 16).Select(i => (long)i).ToArray());
        using var stream = new MemoryStream();
        index.Save(stream);
        byte[] bytes = stream.ToArray();
        BitConverter.TryWriteBytes(bytes.AsSpan(4), 2); // block is version 1; 2 is another family's version
        Assert.Throws<InvalidDataException>(() => IndexFactory.Load(new MemoryStream(bytes)));
        BitConverter.TryWriteBytes(bytes.AsSpan(4), 99);
        Assert.Throws<InvalidDataException>(() => IndexFactory.Load(new MemoryStream(bytes)));
    }

    [Fact]
    public void Unknown_families_and_keys_are_refused_and_defaults_come_from_the_family()
    {
        Assert.Throws<ArgumentException>(() => IndexFactory.Create("nope", 8));
        Assert.Throws<ArgumentException>(() => IndexFactory.Create("block:Z=3", 8));
        Assert.Throws<ArgumentException>(() => IndexFactory.Create("faiss", 8));
        Assert.Equal(["block", "centroid", "lsh", "graph", "faiss"], IndexFamilies.All.Select(f => f.Name));

        // 2% of the tokens (at least 64); LSH twice that.
        Assert.Equal(200, IndexFactory.DefaultParameters("block", 10_000).Budget);
        Assert.Equal(400, IndexFactory.DefaultParameters("lsh:K=10", 10_000).Budget);
        Assert.Equal(64, IndexFactory.DefaultParameters("graph", 1_000).Budget);
    }

    [Fact]
    public void Optional_abilities_are_interfaces()
    {
        Assert.IsAssignableFrom<ISamplingIndex>(IndexFactory.Create("lsh", 8));
        Assert.IsAssignableFrom<IQueryGuidedIndex>(IndexFactory.Create("graph", 8));
        Assert.IsAssignableFrom<IRangeSearchIndex>(IndexFactory.Create("block", 8));
        Assert.False(IndexFactory.Create("centroid", 8) is ISamplingIndex);
    }
}

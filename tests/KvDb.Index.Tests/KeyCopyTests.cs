using KvDb.Workload;

namespace KvDb.Index.Tests;

/// <summary>centroid and graph keep their key copy as bf16: half the bytes of f32, and a new stream version.</summary>
public sealed class KeyCopyTests
{
    private const int Dimension = 128;
    private const int Tokens = 4096;

    [Theory]
    [InlineData("centroid:L2")]
    [InlineData("graph")]
    public void Memory_per_token_is_below_what_an_f32_key_copy_alone_would_take(string spec)
    {
        using IKeyIndex index = Build(spec);
        // An f32 copy alone is 4·d = 512 B per token; the bf16 copy is 2·d = 256 B plus an 8 B position, and
        // what else the families keep (cluster tables ~60 B, adjacency 96 B at R=24) stays under 512 B.
        double perToken = (double)index.MemoryBytes / Tokens;
        Assert.InRange(perToken, 2.0 * Dimension + 8, 4.0 * Dimension);
    }

    [Theory]
    [InlineData("centroid:L2")]
    [InlineData("graph")]
    public void A_version_1_stream_with_an_f32_key_copy_is_refused(string spec)
    {
        using IKeyIndex index = Build(spec);
        byte[] bytes = Save(index);
        Assert.Equal(2, BitConverter.ToInt32(bytes, 4));
        BitConverter.TryWriteBytes(bytes.AsSpan(4), 1);
        var error = Assert.Throws<InvalidDataException>(() => IndexFactory.Load(new MemoryStream(bytes)));
        Assert.Contains("version 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Families_whose_payload_did_not_change_still_write_and_load_version_1()
    {
        using IKeyIndex index = Build("block");
        byte[] bytes = Save(index);
        Assert.Equal(1, BitConverter.ToInt32(bytes, 4));
        using IKeyIndex loaded = IndexFactory.Load(new MemoryStream(bytes));
        Assert.Equal(Tokens, loaded.Count);
    }

    private static IKeyIndex Build(string spec)
    {
        var rng = new DeterministicRandom(0xB16);
        var keys = new float[Tokens * Dimension];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = (float)rng.NextGaussian();
        }

        var positions = new long[Tokens];
        for (int i = 0; i < Tokens; i++)
        {
            positions[i] = i;
        }

        IKeyIndex index = IndexFactory.Create(spec, Dimension);
        index.Build(keys, positions);
        return index;
    }

    private static byte[] Save(IKeyIndex index)
    {
        using var stream = new MemoryStream();
        index.Save(stream);
        return stream.ToArray();
    }
}

using KvDb.Kernels;

namespace KvDb.Workload.Tests;

public class SyntheticWorkloadTests
{
    private static readonly SyntheticWorkloadOptions Small = new() { Tokens = 600, NumKvHeads = 4, NumQueryHeads = 16, HeadDim = 64, Seed = 11 };

    [Theory]
    [InlineData(KvDType.F32)]
    [InlineData(KvDType.F16)]
    [InlineData(KvDType.BF16)]
    public void SameSeed_GivesIdenticalBytes(KvDType dtype)
    {
        var a = new SyntheticWorkload(Small);
        var b = new SyntheticWorkload(Small);

        Assert.Equal(a.KeyBytes(dtype, 0, 600), b.KeyBytes(dtype, 0, 600));
        Assert.Equal(a.ValueBytes(dtype, 0, 600), b.ValueBytes(dtype, 0, 600));
        Assert.Equal(a.Queries(3, 5), b.Queries(3, 5));
        for (int kv = 0; kv < Small.NumKvHeads; kv++)
        {
            Assert.Equal(a.NeedlePositions(kv), b.NeedlePositions(kv));
            Assert.Equal(a.IsDiffuseHead(kv), b.IsDiffuseHead(kv));
        }

        var idsA = new int[600];
        var idsB = new int[600];
        a.FillTokenIds(0, idsA);
        b.FillTokenIds(0, idsB);
        Assert.Equal(idsA, idsB);
    }

    [Fact]
    public void DifferentSeed_GivesDifferentData()
    {
        var a = new SyntheticWorkload(Small);
        var b = new SyntheticWorkload(Small with { Seed = 12 });

        Assert.NotEqual(a.KeyBytes(KvDType.BF16, 0, 600), b.KeyBytes(KvDType.BF16, 0, 600));
        Assert.NotEqual(a.ValueBytes(KvDType.BF16, 0, 600), b.ValueBytes(KvDType.BF16, 0, 600));
        Assert.NotEqual(a.Queries(1, 5), b.Queries(1, 5));
        var idsA = new int[600];
        var idsB = new int[600];
        a.FillTokenIds(0, idsA);
        b.FillTokenIds(0, idsB);
        Assert.NotEqual(idsA, idsB);
    }

    [Fact]
    public void DifferentLayerOrQuerySeed_GivesDifferentData()
    {
        var a = new SyntheticWorkload(Small);
        var b = new SyntheticWorkload(Small with { Layer = 1 });

        Assert.NotEqual(a.KeyBytes(KvDType.F32, 0, 50), b.KeyBytes(KvDType.F32, 0, 50));
        Assert.NotEqual(a.Queries(1, 5), a.Queries(1, 6));
    }

    [Fact]
    public void Chunks_AreIndependentOfHowTheContextIsSplit()
    {
        // Streaming generation of long contexts relies on any token range being generated on its own.
        var w = new SyntheticWorkload(Small);
        byte[] whole = w.KeyBytes(KvDType.BF16, 0, 600);
        byte[] head = w.KeyBytes(KvDType.BF16, 0, 257);
        byte[] tail = w.KeyBytes(KvDType.BF16, 257, 343);
        Assert.Equal(whole, head.Concat(tail).ToArray());

        byte[] values = w.ValueBytes(KvDType.F16, 0, 600);
        Assert.Equal(values.AsSpan(100 * 4 * 64 * 2, 7 * 4 * 64 * 2).ToArray(), w.ValueBytes(KvDType.F16, 100, 7));
    }

    [Fact]
    public void Needles_LieInsideTheContextAndOutsideSinksAndRecentWindow()
    {
        var options = new SyntheticWorkloadOptions { Tokens = 8192 };
        var w = new SyntheticWorkload(options);
        for (int kv = 0; kv < options.NumKvHeads; kv++)
        {
            IReadOnlyList<long> needles = w.NeedlePositions(kv);
            Assert.Equal(options.NeedlesPerHead, needles.Count);
            Assert.All(needles, p => Assert.InRange(p, options.SinkTokens, options.Tokens - options.RecentWindow - 1));
        }
    }

    [Fact]
    public void DiffuseHeads_FollowTheConfiguredFraction()
    {
        var w = new SyntheticWorkload(new SyntheticWorkloadOptions { NumKvHeads = 8, DiffuseHeadFraction = 0.25 });
        int diffuse = 0;
        for (int kv = 0; kv < 8; kv++)
        {
            diffuse += w.IsDiffuseHead(kv) ? 1 : 0;
        }

        Assert.Equal(2, diffuse);
    }

    [Fact]
    public void RejectsImpossibleShapes()
    {
        Assert.Throws<ArgumentException>(() => new SyntheticWorkload(new SyntheticWorkloadOptions { NumKvHeads = 3, NumQueryHeads = 32 }));
        Assert.Throws<ArgumentException>(() => new SyntheticWorkload(new SyntheticWorkloadOptions { HeadDim = 4 }));
        Assert.Throws<ArgumentException>(() => new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = -1 }));
    }
}

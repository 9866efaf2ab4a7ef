using KvDb.TestKit;
using Xunit.Abstractions;

namespace KvDb.Kernels.Tests;

/// <summary>
/// Full exact attention split into token-range chunks (one pass per KV head, merged by LSE) against the f64
/// reference: chunk lengths of one block, several blocks and not a whole number of blocks, odd block sizes,
/// tiny contexts, contexts shorter than one chunk, and exclude ranges that empty whole chunks.
/// </summary>
public class ExactAttentionChunksTests(ITestOutputHelper log)
{
    private const double OutputTolerance = 1e-5;
    private const double LseTolerance = 1e-4;

    private static readonly KvDType[] DTypes = [KvDType.F32, KvDType.F16, KvDType.BF16];

    public static TheoryData<KvDType, int, int, int> Splits()
    {
        // (tokens, block capacity, chunk tokens): one block per chunk, chunks not a whole number of blocks
        // (rounded down to 3 blocks), blocks of 7 tokens, a full chunk followed by a one-token chunk, a
        // single token, and blocks of one token each.
        (int Tokens, int Capacity, int Chunk)[] splits =
        [
            (1000, 64, 64), (1000, 64, 200), (1000, 16, 48), (1000, 7, 7), (1000, 7, 30), (65, 64, 64), (1, 64, 64), (5, 1, 1),
        ];
        var data = new TheoryData<KvDType, int, int, int>();
        foreach (KvDType dtype in DTypes)
        {
            foreach ((int tokens, int capacity, int chunk) in splits)
            {
                data.Add(dtype, tokens, capacity, chunk);
            }
        }

        return data;
    }

    public static TheoryData<KvDType, int, int> ShorterThanOneChunk()
    {
        var data = new TheoryData<KvDType, int, int>();
        foreach (KvDType dtype in DTypes)
        {
            foreach (int tokens in new[] { 1, 10, 63, 500 })
            {
                data.Add(dtype, tokens, 64);
                data.Add(dtype, tokens, 7);
            }
        }

        return data;
    }

    public static TheoryData<KvDType, long, long> ExcludeAcrossChunks()
    {
        // Chunks of 64 tokens over blocks of 16: the first two chunks empty (chunk 0 contributes nothing to
        // the merge), a middle range, one straddling a chunk boundary, all but the last token, all but the first.
        (long Start, long End)[] ranges = [(0, 128), (300, 700), (120, 130), (0, 999), (1, 1000)];
        var data = new TheoryData<KvDType, long, long>();
        foreach (KvDType dtype in DTypes)
        {
            foreach ((long start, long end) in ranges)
            {
                data.Add(dtype, start, end);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Splits))]
    public void SplitContext_MatchesReference(KvDType dtype, int tokens, int capacity, int chunkTokens)
    {
        var c = new AttentionCase(dtype, tokens, numKvHeads: 2, group: 4, headDim: 128, numQueries: 1);
        AssertMatchesReference(c, capacity, 0, 0, chunkTokens: chunkTokens);
    }

    [Theory]
    [MemberData(nameof(ShorterThanOneChunk))]
    public void ContextShorterThanOneChunk_MatchesReference(KvDType dtype, int tokens, int capacity)
    {
        var c = new AttentionCase(dtype, tokens, numKvHeads: 2, group: 4, headDim: 128, numQueries: 1);
        AssertMatchesReference(c, capacity, 0, 0, chunkTokens: 1024);
    }

    [Theory]
    [MemberData(nameof(ExcludeAcrossChunks))]
    public void SplitWithExcludeRange_MatchesReference(KvDType dtype, long excludeStart, long excludeEnd)
    {
        // Group 2 with three query tokens leaves six query rows, which do not fill the register blocks of four.
        var c = new AttentionCase(dtype, 1000, numKvHeads: 2, group: 2, headDim: 64, numQueries: 3);
        AssertMatchesReference(c, 16, excludeStart, excludeEnd, chunkTokens: 64);
    }

    [Theory]
    [InlineData(KvDType.F32)]
    [InlineData(KvDType.F16)]
    [InlineData(KvDType.BF16)]
    public void SplitPortablePath_MatchesReference(KvDType dtype)
    {
        var c = new AttentionCase(dtype, 1000, numKvHeads: 2, group: 8, headDim: 64, numQueries: 3);
        AssertMatchesReference(c, 16, 100, 250, allowFused: false, chunkTokens: 48);
    }

    [Theory]
    [InlineData(KvDType.F32, 1000f)]
    [InlineData(KvDType.BF16, 1000f)]
    [InlineData(KvDType.BF16, -1000f)]
    public void SplitWithHugeScores_StaysFiniteAndAccurate(KvDType dtype, float keyScale)
    {
        // Chunk maxima thousands apart: every chunk but the dominant one merges with weight e^(max_c − M) = 0.
        var c = new AttentionCase(dtype, 4000, numKvHeads: 2, group: 4, headDim: 128, numQueries: 3, keyScale);
        KernelResult r = c.Run(64, 1000, 1500, chunkTokens: 256);
        (double[] Output, double[] Lse) expected = c.Reference(1000, 1500);

        Assert.True(expected.Lse.Max(Math.Abs) > 1000, "scores were supposed to be huge");
        double outputError = Accuracy.MaxRowRelL2(r.Output, expected.Output, c.HeadDim);
        double lseError = Accuracy.MaxLseRelativeError(r.Lse, expected.Lse);
        log.WriteLine($"output rel-L2 {outputError:E3}, LSE rel error {lseError:E3}");
        Assert.InRange(outputError, 0, OutputTolerance);
        Assert.InRange(lseError, 0, 1e-6);
    }

    [Fact]
    public void SplitExcludingEverything_GivesEmptyPartial()
    {
        var c = new AttentionCase(KvDType.BF16, 1000, numKvHeads: 2, group: 4, headDim: 64, numQueries: 3);
        KernelResult r = c.Run(16, 0, 1000, chunkTokens: 64);

        Assert.All(r.Lse, x => Assert.Equal(float.NegativeInfinity, x));
        Assert.All(r.Output, x => Assert.Equal(0f, x));
        Assert.Equal(default, r.Counters);
    }

    [Fact]
    public void LongContext_GivesSameBitsEveryRun()
    {
        // 10000 tokens × 2 KV heads is past the parallel threshold: the kernel splits into chunks of 1024
        // tokens that run on whichever threads are free. The merge goes in chunk order, so neither the
        // schedule nor the core count may change a bit, and the split is the one a forced 1024 gives.
        var c = new AttentionCase(KvDType.BF16, 10000, numKvHeads: 2, group: 4, headDim: 128, numQueries: 1);
        using NativeKvBlocks blocks = c.Layout(64);
        KernelResult first = c.Run(blocks.Blocks, 64);
        for (int i = 0; i < 3; i++)
        {
            KernelResult again = c.Run(blocks.Blocks, 64);
            Assert.Equal(first.Output, again.Output);
            Assert.Equal(first.Lse, again.Lse);
        }

        KernelResult forced = c.Run(blocks.Blocks, 64, chunkTokens: 1024);
        Assert.Equal(first.Output, forced.Output);
        Assert.Equal(first.Lse, forced.Lse);

        (double[] Output, double[] Lse) expected = c.Reference();
        Assert.InRange(Accuracy.MaxRowRelL2(first.Output, expected.Output, c.HeadDim), 0, OutputTolerance);
        Assert.InRange(Accuracy.MaxLseError(first.Lse, expected.Lse), 0, LseTolerance);
    }

    private void AssertMatchesReference(AttentionCase c, int capacity, long excludeStart, long excludeEnd, bool allowFused = true, int chunkTokens = 0)
    {
        KernelResult r = c.Run(capacity, excludeStart, excludeEnd, allowFused, chunkTokens);
        (double[] Output, double[] Lse) expected = c.Reference(excludeStart, excludeEnd);

        double outputError = Accuracy.MaxRowRelL2(r.Output, expected.Output, c.HeadDim);
        double lseError = Accuracy.MaxLseError(r.Lse, expected.Lse);
        log.WriteLine($"output rel-L2 {outputError:E3}, LSE abs error {lseError:E3}");
        Assert.True(outputError <= OutputTolerance, $"output rel-L2 {outputError:E3} > {OutputTolerance:E0}");
        Assert.True(lseError <= LseTolerance, $"LSE abs error {lseError:E3} > {LseTolerance:E0}");
    }
}

using KvDb.TestKit;
using Xunit.Abstractions;

namespace KvDb.Kernels.Tests;

public class ExactAttentionKernelTests(ITestOutputHelper log)
{
    private const double OutputTolerance = 1e-5;
    private const double LseTolerance = 1e-4;

    private static readonly KvDType[] DTypes = [KvDType.F32, KvDType.F16, KvDType.BF16];

    public static TheoryData<KvDType, int, int> ContextLengths()
    {
        var data = new TheoryData<KvDType, int, int>();
        foreach (KvDType dtype in DTypes)
        {
            foreach (int tokens in new[] { 1, 63, 64, 65, 1000, 10000 })
            {
                foreach (int capacity in new[] { 64, 16 })
                {
                    data.Add(dtype, tokens, capacity);
                }
            }
        }

        return data;
    }

    public static TheoryData<KvDType, int, int, int> Shapes()
    {
        var data = new TheoryData<KvDType, int, int, int>();
        foreach (KvDType dtype in DTypes)
        {
            // Group 2 and one query token leaves query rows that do not fill a register block of four; head
            // dim 40 is not a multiple of the fused loops' 32-element chunk and takes the portable path; 96 is
            // an odd number of chunks, which the fused V pass (two chunks at a time) finishes with one.
            foreach (int group in new[] { 1, 2, 4, 8 })
            {
                foreach (int headDim in new[] { 40, 64, 96, 128 })
                {
                    foreach (int numQueries in new[] { 1, 3 })
                    {
                        data.Add(dtype, group, headDim, numQueries);
                    }
                }
            }
        }

        return data;
    }

    public static TheoryData<KvDType, int, long, long> ExcludeRanges()
    {
        // Over a 1000-token context: start, middle, end, past the end, inside one block, one token,
        // straddling position 0, and the two spellings of "nothing excluded" (empty and inverted).
        (long Start, long End)[] ranges =
        [
            (0, 100), (300, 700), (900, 1000), (900, long.MaxValue), (70, 75), (500, 501), (-50, 10), (500, 500), (700, 300),
        ];
        var data = new TheoryData<KvDType, int, long, long>();
        foreach (KvDType dtype in DTypes)
        {
            foreach (int capacity in new[] { 64, 16 })
            {
                foreach ((long start, long end) in ranges)
                {
                    data.Add(dtype, capacity, start, end);
                }
            }
        }

        return data;
    }

    public static TheoryData<KvDType, int, int, long, long> ExcludeEverything()
    {
        var data = new TheoryData<KvDType, int, int, long, long>();
        foreach (KvDType dtype in DTypes)
        {
            foreach (int tokens in new[] { 1, 65, 1000 })
            {
                data.Add(dtype, tokens, 64, 0, tokens);
                data.Add(dtype, tokens, 16, -1, tokens + 1);
                data.Add(dtype, tokens, 64, long.MinValue, long.MaxValue);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ContextLengths))]
    public void MatchesReference_AcrossContextLengths(KvDType dtype, int tokens, int capacity)
    {
        var c = new AttentionCase(dtype, tokens, numKvHeads: 2, group: 4, headDim: 128, numQueries: 1);
        AssertMatchesReference(c, capacity, 0, 0);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesReference_AcrossShapes(KvDType dtype, int group, int headDim, int numQueries)
    {
        var c = new AttentionCase(dtype, 1000, numKvHeads: 2, group, headDim, numQueries);
        AssertMatchesReference(c, 64, 0, 0);
    }

    public static TheoryData<KvDType, int, int, int> PortableCases()
    {
        var data = new TheoryData<KvDType, int, int, int>();
        foreach (KvDType dtype in DTypes)
        {
            data.Add(dtype, 4, 128, 1);
            data.Add(dtype, 8, 64, 3);
            data.Add(dtype, 1, 128, 3);
        }

        return data;
    }

    /// <summary>The path machines without AVX-512 or AVX2 + FMA take; on this one it only runs when asked for.</summary>
    [Theory]
    [MemberData(nameof(PortableCases))]
    public void PortablePath_MatchesReference(KvDType dtype, int group, int headDim, int numQueries)
    {
        var c = new AttentionCase(dtype, 1000, numKvHeads: 2, group, headDim, numQueries);
        AssertMatchesReference(c, 16, 100, 250, allowFused: false);
    }

    [Theory]
    [MemberData(nameof(ExcludeRanges))]
    public void MatchesReference_WithExcludeRange(KvDType dtype, int capacity, long excludeStart, long excludeEnd)
    {
        var c = new AttentionCase(dtype, 1000, numKvHeads: 2, group: 4, headDim: 64, numQueries: 3);
        AssertMatchesReference(c, capacity, excludeStart, excludeEnd);
    }

    [Theory]
    [MemberData(nameof(ExcludeEverything))]
    public void ExcludingEverything_GivesEmptyPartial(KvDType dtype, int tokens, int capacity, long excludeStart, long excludeEnd)
    {
        var c = new AttentionCase(dtype, tokens, numKvHeads: 2, group: 4, headDim: 64, numQueries: 3);
        KernelResult r = c.Run(capacity, excludeStart, excludeEnd);

        Assert.All(r.Lse, x => Assert.Equal(float.NegativeInfinity, x));
        Assert.All(r.Output, x => Assert.Equal(0f, x));
        Assert.Equal(default, r.Counters);
    }

    [Fact]
    public void NoBlocks_GivesEmptyPartial()
    {
        var c = new AttentionCase(KvDType.BF16, 0, numKvHeads: 2, group: 4, headDim: 64, numQueries: 1);
        KernelResult r = c.Run([], 64);

        Assert.All(r.Lse, x => Assert.Equal(float.NegativeInfinity, x));
        Assert.All(r.Output, x => Assert.Equal(0f, x));
    }

    [Theory]
    [InlineData(KvDType.F32, 1000f)]
    [InlineData(KvDType.F32, -1000f)]
    [InlineData(KvDType.F16, 1000f)]
    [InlineData(KvDType.BF16, 1000f)]
    [InlineData(KvDType.BF16, -1000f)]
    public void HugeScores_StayFiniteAndAccurate(KvDType dtype, float keyScale)
    {
        // Scores in the thousands overflow exp() in any single-pass softmax that does not subtract a running max.
        var c = new AttentionCase(dtype, 4000, numKvHeads: 2, group: 4, headDim: 128, numQueries: 3, keyScale);
        Assert.All(c.Keys, k => Assert.True(float.IsFinite(k), "key scaling overflowed the dtype; the test would prove nothing"));
        KernelResult r = c.Run(64, 1000, 1500);
        (double[] Output, double[] Lse) expected = c.Reference(1000, 1500);

        Assert.All(r.Output, x => Assert.True(float.IsFinite(x)));
        Assert.All(r.Lse, x => Assert.True(float.IsFinite(x)));
        Assert.True(expected.Lse.Max(Math.Abs) > 1000, "scores were supposed to be huge");
        double outputError = Accuracy.MaxRowRelL2(r.Output, expected.Output, c.HeadDim);
        double lseError = Accuracy.MaxLseRelativeError(r.Lse, expected.Lse);
        log.WriteLine($"max |LSE| {expected.Lse.Max(Math.Abs):F0}, output rel-L2 {outputError:E3}, LSE rel error {lseError:E3}");

        // Scores thousands apart make the softmax one-hot, so the output is one value row and keeps the usual
        // bound. The LSE is bounded relatively: an f32 dot product of terms ~1e4 has an absolute error ~1e-3
        // that no summation order removes, and the reference's double scores do not have it.
        Assert.InRange(outputError, 0, OutputTolerance);
        Assert.InRange(lseError, 0, 1e-6);
    }

    [Fact]
    public void Counters_CountLiveRowsAndBytes()
    {
        var c = new AttentionCase(KvDType.BF16, 1000, numKvHeads: 2, group: 4, headDim: 64, numQueries: 3);
        KernelResult r = c.Run(64, 100, 300);

        long live = 800 * 2;
        Assert.Equal(new AttentionCounters(live * 3, live * 3, live * 2 * 64 * 2), r.Counters);
    }

    [Fact]
    public void RejectsMismatchedBuffers()
    {
        var c = new AttentionCase(KvDType.F32, 10, numKvHeads: 2, group: 4, headDim: 64, numQueries: 1);
        using NativeKvBlocks blocks = c.Layout(64);
        AttentionGeometry g = c.Geometry(64);

        Assert.Throws<ArgumentException>(() => ExactAttentionKernel.Run(g, blocks.Blocks, c.Queries, 2, 0, 0, new float[c.Queries.Length], new float[8]));
        Assert.Throws<ArgumentException>(() => ExactAttentionKernel.Run(g, blocks.Blocks, c.Queries, 1, 0, 0, new float[c.Queries.Length - 1], new float[8]));
        Assert.Throws<ArgumentException>(() => ExactAttentionKernel.Run(g, blocks.Blocks, c.Queries, 1, 0, 0, new float[c.Queries.Length], new float[7]));
        Assert.Throws<ArgumentException>(() => ExactAttentionKernel.Run(g with { NumQueryHeads = 7 }, blocks.Blocks, c.Queries, 1, 0, 0, new float[c.Queries.Length], new float[8]));
    }

    private void AssertMatchesReference(AttentionCase c, int capacity, long excludeStart, long excludeEnd, bool allowFused = true)
    {
        KernelResult r = c.Run(capacity, excludeStart, excludeEnd, allowFused);
        (double[] Output, double[] Lse) expected = c.Reference(excludeStart, excludeEnd);

        double outputError = Accuracy.MaxRowRelL2(r.Output, expected.Output, c.HeadDim);
        double lseError = Accuracy.MaxLseError(r.Lse, expected.Lse);
        log.WriteLine($"output rel-L2 {outputError:E3}, LSE abs error {lseError:E3}");
        Assert.True(outputError <= OutputTolerance, $"output rel-L2 {outputError:E3} > {OutputTolerance:E0}");
        Assert.True(lseError <= LseTolerance, $"LSE abs error {lseError:E3} > {LseTolerance:E0}");
    }
}

using KvDb.TestKit;

namespace KvDb.Kernels.Tests;

public class PartialAttentionTests
{
    private const double OutputTolerance = 1e-5;
    private const double LseTolerance = 1e-4;

    public static TheoryData<KvDType, int, int, int, bool> Splits()
    {
        var data = new TheoryData<KvDType, int, int, int, bool>();
        foreach (KvDType dtype in new[] { KvDType.F32, KvDType.F16, KvDType.BF16 })
        {
            foreach ((int tokens, int window, int capacity) in new[] { (1000, 1, 64), (1000, 37, 16), (1000, 64, 64), (1000, 256, 16), (65, 64, 64), (65, 65, 16), (5000, 256, 64) })
            {
                foreach (bool windowOwnBlocks in new[] { true, false })
                {
                    data.Add(dtype, tokens, window, capacity, windowOwnBlocks);
                }
            }
        }

        return data;
    }

    /// <summary>
    /// The query path of a decode step: attend the stored context with the recent window excluded, attend the
    /// window on its own, merge. The window partial comes either from blocks holding only the window (as when
    /// it arrives with the request) or from the same blocks with everything else excluded.
    /// </summary>
    [Theory]
    [MemberData(nameof(Splits))]
    public void ExcludedPlusWindow_MergesToFullAttention(KvDType dtype, int tokens, int window, int capacity, bool windowOwnBlocks)
    {
        var c = new AttentionCase(dtype, tokens, numKvHeads: 2, group: 4, headDim: 128, numQueries: 3);
        int split = tokens - window;
        KernelResult context = c.Run(capacity, split, tokens);
        KernelResult recent;
        if (windowOwnBlocks)
        {
            using NativeKvBlocks windowBlocks = c.Layout(capacity, split, window);
            recent = c.Run(windowBlocks.Blocks, capacity);
        }
        else
        {
            recent = c.Run(capacity, 0, split);
        }

        PartialAttention.MergeInto(context.Output, context.Lse, recent.Output, recent.Lse);
        (double[] Output, double[] Lse) expected = c.Reference();

        double outputError = Accuracy.MaxRowRelL2(context.Output, expected.Output, c.HeadDim);
        double lseError = Accuracy.MaxLseError(context.Lse, expected.Lse);
        Assert.True(outputError <= OutputTolerance, $"output rel-L2 {outputError:E3} > {OutputTolerance:E0}");
        Assert.True(lseError <= LseTolerance, $"LSE abs error {lseError:E3} > {LseTolerance:E0}");
    }

    [Fact]
    public void EmptyPartial_IsIdentity_BothWays()
    {
        var c = new AttentionCase(KvDType.BF16, 300, numKvHeads: 2, group: 4, headDim: 64, numQueries: 3);
        KernelResult full = c.Run(64);
        KernelResult empty = c.Run(64, 0, 300);
        Assert.All(empty.Lse, x => Assert.Equal(float.NegativeInfinity, x));

        float[] output = (float[])full.Output.Clone();
        float[] lse = (float[])full.Lse.Clone();
        PartialAttention.MergeInto(output, lse, empty.Output, empty.Lse);
        Assert.Equal(full.Output, output);
        Assert.Equal(full.Lse, lse);

        output = (float[])empty.Output.Clone();
        lse = (float[])empty.Lse.Clone();
        PartialAttention.MergeInto(output, lse, full.Output, full.Lse);
        Assert.Equal(full.Output, output);
        Assert.Equal(full.Lse, lse);
    }

    [Fact]
    public void EmptyMergedWithEmpty_StaysEmpty()
    {
        float[] output = new float[8];
        float[] lse = [float.NegativeInfinity, float.NegativeInfinity];
        PartialAttention.MergeInto(output, lse, new float[8], [float.NegativeInfinity, float.NegativeInfinity]);

        Assert.All(output, x => Assert.Equal(0f, x));
        Assert.All(lse, x => Assert.Equal(float.NegativeInfinity, x));
    }

    [Fact]
    public void Merge_IsSymmetric()
    {
        var c = new AttentionCase(KvDType.F32, 500, numKvHeads: 2, group: 4, headDim: 64, numQueries: 1);
        KernelResult a = c.Run(64, 0, 200);
        KernelResult b = c.Run(64, 200, 500);

        float[] ab = (float[])a.Output.Clone();
        float[] abLse = (float[])a.Lse.Clone();
        PartialAttention.MergeInto(ab, abLse, b.Output, b.Lse);
        float[] ba = (float[])b.Output.Clone();
        float[] baLse = (float[])b.Lse.Clone();
        PartialAttention.MergeInto(ba, baLse, a.Output, a.Lse);

        for (int i = 0; i < ab.Length; i++)
        {
            Assert.Equal(ab[i], ba[i], 1e-6f);
        }

        for (int i = 0; i < abLse.Length; i++)
        {
            Assert.Equal(abLse[i], baLse[i], 1e-6f);
        }
    }

    [Fact]
    public void RejectsMismatchedShapes()
    {
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto(new float[8], new float[2], new float[6], new float[2]));
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto(new float[8], new float[2], new float[8], new float[1]));
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto(new float[7], new float[2], new float[7], new float[2]));
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto([], [], [], []));
    }
}

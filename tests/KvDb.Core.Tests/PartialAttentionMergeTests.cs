namespace KvDb.Core.Tests;

/// <summary>
/// The LSE merge on its own, against attention computed in f64 from scores and values (no kernels involved;
/// tests/KvDb.Kernels.Tests/PartialAttentionTests checks the merge of real kernel partials).
/// </summary>
public class PartialAttentionMergeTests
{
    [Theory]
    [InlineData(1, 4, 10, 3)]
    [InlineData(3, 16, 100, 1)]
    [InlineData(8, 64, 257, 200)]
    public void MergeOfTwoDisjointPartials_EqualsAttentionOverTheUnion(int heads, int dim, int tokens, int split)
    {
        var rng = new Random(heads * 1000 + tokens);
        double[] scores = new double[heads * tokens];
        double[] values = new double[heads * tokens * dim];
        for (int i = 0; i < scores.Length; i++)
        {
            scores[i] = (rng.NextDouble() - 0.5) * 20;
        }

        for (int i = 0; i < values.Length; i++)
        {
            values[i] = rng.NextDouble() - 0.5;
        }

        (float[] output, float[] lse) = Attend(scores, values, heads, dim, tokens, 0, split);
        (float[] secondOutput, float[] secondLse) = Attend(scores, values, heads, dim, tokens, split, tokens);
        PartialAttention.MergeInto(output, lse, secondOutput, secondLse);
        (float[] expectedOutput, float[] expectedLse) = Attend(scores, values, heads, dim, tokens, 0, tokens);

        for (int i = 0; i < expectedOutput.Length; i++)
        {
            Assert.Equal(expectedOutput[i], output[i], 1e-5f);
        }

        for (int h = 0; h < heads; h++)
        {
            Assert.Equal(expectedLse[h], lse[h], 1e-4f);
        }
    }

    [Fact]
    public void EmptyPartial_IsIdentity_BothWays()
    {
        float[] output = [1f, 2f, 3f, 4f];
        float[] lse = [0.5f, -1f];
        float[] emptyOutput = new float[4];
        float[] emptyLse = [float.NegativeInfinity, float.NegativeInfinity];

        float[] merged = (float[])output.Clone();
        float[] mergedLse = (float[])lse.Clone();
        PartialAttention.MergeInto(merged, mergedLse, emptyOutput, emptyLse);
        Assert.Equal(output, merged);
        Assert.Equal(lse, mergedLse);

        merged = (float[])emptyOutput.Clone();
        mergedLse = (float[])emptyLse.Clone();
        PartialAttention.MergeInto(merged, mergedLse, output, lse);
        Assert.Equal(output, merged);
        Assert.Equal(lse, mergedLse);
    }

    [Fact]
    public void RejectsMismatchedShapes()
    {
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto(new float[8], new float[2], new float[6], new float[2]));
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto(new float[8], new float[2], new float[8], new float[1]));
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto(new float[7], new float[2], new float[7], new float[2]));
        Assert.Throws<ArgumentException>(() => PartialAttention.MergeInto([], [], [], []));
    }

    /// <summary>Softmax attention over tokens [from, to) in f64; an empty range gives the empty partial.</summary>
    private static (float[] Output, float[] Lse) Attend(double[] scores, double[] values, int heads, int dim, int tokens, int from, int to)
    {
        var output = new float[heads * dim];
        var lse = new float[heads];
        for (int h = 0; h < heads; h++)
        {
            if (from == to)
            {
                lse[h] = float.NegativeInfinity;
                continue;
            }

            double max = double.NegativeInfinity;
            for (int t = from; t < to; t++)
            {
                max = Math.Max(max, scores[h * tokens + t]);
            }

            double sum = 0;
            var acc = new double[dim];
            for (int t = from; t < to; t++)
            {
                double w = Math.Exp(scores[h * tokens + t] - max);
                sum += w;
                for (int d = 0; d < dim; d++)
                {
                    acc[d] += w * values[(h * tokens + t) * dim + d];
                }
            }

            for (int d = 0; d < dim; d++)
            {
                output[h * dim + d] = (float)(acc[d] / sum);
            }

            lse[h] = (float)(max + Math.Log(sum));
        }

        return (output, lse);
    }
}

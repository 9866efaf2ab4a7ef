using KvDb.Client;

namespace KvDb.Client.Tests;

public sealed class AttentionPartialTests
{
    /// <summary>Splits one softmax over made-up scores into two halves and checks the merge against the whole, in f64.</summary>
    [Fact]
    public void Merging_two_halves_equals_attention_over_the_union()
    {
        double[] scores = [3.0, -1.0, 40.0, 39.5, 0.0, -60.0];
        double[][] values = [[1, 0], [0, 1], [2, 2], [-1, 3], [5, 5], [7, -7]];
        AttentionPartial left = Partial(scores, values, 0, 3);
        AttentionPartial right = Partial(scores, values, 3, 6);
        AttentionPartial whole = Partial(scores, values, 0, 6);

        AttentionPartial merged = AttentionPartial.Merge(left, right);
        Assert.Equal(whole.Lse[0], merged.Lse[0], 5);
        Assert.Equal(whole.Output[0], merged.Output[0], 5);
        Assert.Equal(whole.Output[1], merged.Output[1], 5);

        AttentionPartial swapped = AttentionPartial.Merge(right, left);
        Assert.Equal(merged.Output, swapped.Output);
    }

    [Fact]
    public void Empty_partial_is_the_identity_on_both_sides()
    {
        AttentionPartial p = new([0.5f, -1.5f], [2.25f], 1, 1, 2);
        AttentionPartial empty = AttentionPartial.Empty(1, 1, 2);
        Assert.Equal(p.Output, AttentionPartial.Merge(p, empty).Output);
        Assert.Equal(p.Lse, AttentionPartial.Merge(empty, p).Lse);
        Assert.Equal(p.Output, AttentionPartial.Merge(empty, p).Output);
        AttentionPartial both = AttentionPartial.Merge(empty, empty);
        Assert.True(float.IsNegativeInfinity(both.Lse[0]));
        Assert.Equal([0f, 0f], both.Output);
    }

    [Fact]
    public void Mismatched_shapes_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => AttentionPartial.Merge(AttentionPartial.Empty(1, 2, 4), AttentionPartial.Empty(1, 2, 8)));
    }

    private static AttentionPartial Partial(double[] scores, double[][] values, int from, int to)
    {
        double max = double.NegativeInfinity;
        for (int j = from; j < to; j++)
        {
            max = Math.Max(max, scores[j]);
        }

        double sum = 0;
        double o0 = 0;
        double o1 = 0;
        for (int j = from; j < to; j++)
        {
            double p = Math.Exp(scores[j] - max);
            sum += p;
            o0 += p * values[j][0];
            o1 += p * values[j][1];
        }

        return new AttentionPartial([(float)(o0 / sum), (float)(o1 / sum)], [(float)(max + Math.Log(sum))], 1, 1, 2);
    }
}

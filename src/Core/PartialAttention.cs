namespace KvDb.Core;

/// <summary>
/// The LSE merge of BRIEF section 5: two partial attentions over disjoint token sets combine into the
/// attention over their union. An empty partial (lse = −∞, o = 0) is the identity.
/// </summary>
public static class PartialAttention
{
    /// <summary>
    /// Merges per-head partials (outputs [heads, dim], lse [heads]) of <paramref name="second"/> into
    /// <paramref name="first"/> in place.
    /// </summary>
    public static void MergeInto(Span<float> firstOutput, Span<float> firstLse, ReadOnlySpan<float> secondOutput, ReadOnlySpan<float> secondLse)
    {
        int heads = firstLse.Length;
        if (secondLse.Length != heads || firstOutput.Length != secondOutput.Length || heads == 0 || firstOutput.Length % heads != 0)
        {
            throw new ArgumentException("partials must have the same shape: outputs [heads, dim] and lse [heads]");
        }

        int dim = firstOutput.Length / heads;
        for (int h = 0; h < heads; h++)
        {
            float lse1 = firstLse[h];
            float lse2 = secondLse[h];
            if (float.IsNegativeInfinity(lse2))
            {
                continue;
            }

            Span<float> o1 = firstOutput.Slice(h * dim, dim);
            ReadOnlySpan<float> o2 = secondOutput.Slice(h * dim, dim);
            if (float.IsNegativeInfinity(lse1))
            {
                o2.CopyTo(o1);
                firstLse[h] = lse2;
                continue;
            }

            double m = Math.Max(lse1, lse2);
            double w1 = Math.Exp(lse1 - m);
            double w2 = Math.Exp(lse2 - m);
            double inv = 1.0 / (w1 + w2);
            for (int d = 0; d < dim; d++)
            {
                o1[d] = (float)((w1 * o1[d] + w2 * o2[d]) * inv);
            }

            firstLse[h] = (float)(m + Math.Log(w1 + w2));
        }
    }
}

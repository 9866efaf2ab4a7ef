namespace KvDb.Kernels.Tests;

/// <summary>Attention output and natural-log LSE per (query token, query head), in double.</summary>
internal sealed record ReferenceResult(double[] Output, double[] Lse);

/// <summary>
/// Textbook attention in double, written for obviousness rather than speed: scores, max, exp, sum,
/// weighted sum of values. The kernel under test is judged against this, so it must share nothing with it
/// beyond the input values.
/// </summary>
internal static class ReferenceAttention
{
    /// <summary>
    /// <paramref name="keys"/> and <paramref name="values"/> are [tokens, numKvHeads, headDim] in wire order,
    /// token i at sequence position <paramref name="firstPosition"/> + i; <paramref name="queries"/> is
    /// [numQueries, numQueryHeads, headDim]. Tokens at positions in [excludeStart, excludeEnd) are skipped.
    /// </summary>
    public static ReferenceResult Compute(
        float[] keys,
        float[] values,
        int tokens,
        long firstPosition,
        int numKvHeads,
        int headDim,
        float[] queries,
        int numQueries,
        int numQueryHeads,
        double scale,
        long excludeStart,
        long excludeEnd)
    {
        int group = numQueryHeads / numKvHeads;
        var output = new double[numQueries * numQueryHeads * headDim];
        var lse = new double[numQueries * numQueryHeads];
        var selected = new List<int>();
        for (int i = 0; i < tokens; i++)
        {
            long pos = firstPosition + i;
            if (pos < excludeStart || pos >= excludeEnd)
            {
                selected.Add(i);
            }
        }

        var scores = new double[selected.Count];
        for (int t = 0; t < numQueries; t++)
        {
            for (int h = 0; h < numQueryHeads; h++)
            {
                int kv = h / group;
                int qOffset = (t * numQueryHeads + h) * headDim;
                int head = t * numQueryHeads + h;
                if (selected.Count == 0)
                {
                    lse[head] = double.NegativeInfinity;
                    continue;
                }

                double max = double.NegativeInfinity;
                for (int j = 0; j < selected.Count; j++)
                {
                    int kOffset = (selected[j] * numKvHeads + kv) * headDim;
                    double dot = 0;
                    for (int i = 0; i < headDim; i++)
                    {
                        dot += (double)queries[qOffset + i] * keys[kOffset + i];
                    }

                    scores[j] = scale * dot;
                    max = Math.Max(max, scores[j]);
                }

                double sum = 0;
                for (int j = 0; j < selected.Count; j++)
                {
                    double p = Math.Exp(scores[j] - max);
                    sum += p;
                    int vOffset = (selected[j] * numKvHeads + kv) * headDim;
                    for (int i = 0; i < headDim; i++)
                    {
                        output[qOffset + i] += p * values[vOffset + i];
                    }
                }

                for (int i = 0; i < headDim; i++)
                {
                    output[qOffset + i] /= sum;
                }

                lse[head] = max + Math.Log(sum);
            }
        }

        return new ReferenceResult(output, lse);
    }
}

namespace KvDb.Workload;

/// <summary>
/// The obviously-correct attention: f64 scores over every token outside the exclude range, softmax with
/// max subtraction, output and natural-log LSE per query head. Slow on purpose; everything fast is
/// checked against it.
/// </summary>
public static class ReferenceAttention
{
    /// <summary>
    /// keys/values f32 [n, numKvHeads, headDim]; queries f32 [q, numQueryHeads, headDim]. Returns output
    /// [q, numQueryHeads, headDim] and lse [q, numQueryHeads]; an empty selection gives lse = −∞ and output 0.
    /// </summary>
    public static (double[] Output, double[] Lse) Compute(
        ReadOnlySpan<float> keys,
        ReadOnlySpan<float> values,
        ReadOnlySpan<float> queries,
        int numQueries,
        int numQueryHeads,
        int numKvHeads,
        int headDim,
        double scale,
        long excludeStart = 0,
        long excludeEnd = 0)
    {
        int n = keys.Length / (numKvHeads * headDim);
        int group = numQueryHeads / numKvHeads;
        var output = new double[numQueries * numQueryHeads * headDim];
        var lse = new double[numQueries * numQueryHeads];
        var scores = new double[n];
        for (int t = 0; t < numQueries; t++)
        {
            for (int qh = 0; qh < numQueryHeads; qh++)
            {
                int kv = qh / group;
                ReadOnlySpan<float> q = queries.Slice((t * numQueryHeads + qh) * headDim, headDim);
                double max = double.NegativeInfinity;
                for (int j = 0; j < n; j++)
                {
                    if (j >= excludeStart && j < excludeEnd)
                    {
                        scores[j] = double.NegativeInfinity;
                        continue;
                    }

                    ReadOnlySpan<float> k = keys.Slice((j * numKvHeads + kv) * headDim, headDim);
                    double dot = 0;
                    for (int i = 0; i < headDim; i++)
                    {
                        dot += (double)q[i] * k[i];
                    }

                    scores[j] = dot * scale;
                    max = Math.Max(max, scores[j]);
                }

                int o = (t * numQueryHeads + qh) * headDim;
                int li = t * numQueryHeads + qh;
                if (double.IsNegativeInfinity(max))
                {
                    lse[li] = double.NegativeInfinity;
                    continue;
                }

                double sum = 0;
                for (int j = 0; j < n; j++)
                {
                    if (double.IsNegativeInfinity(scores[j]))
                    {
                        continue;
                    }

                    double p = Math.Exp(scores[j] - max);
                    sum += p;
                    ReadOnlySpan<float> v = values.Slice((j * numKvHeads + kv) * headDim, headDim);
                    for (int i = 0; i < headDim; i++)
                    {
                        output[o + i] += p * v[i];
                    }
                }

                for (int i = 0; i < headDim; i++)
                {
                    output[o + i] /= sum;
                }

                lse[li] = max + Math.Log(sum);
            }
        }

        return (output, lse);
    }

    /// <summary>‖a − b‖₂ / ‖b‖₂ (0 when both are zero).</summary>
    public static double RelativeL2(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double num = 0;
        double den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = actual[i] - expected[i];
            num += diff * diff;
            den += expected[i] * expected[i];
        }

        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    /// <summary>Largest |a − b| over finite pairs; matching infinities count as 0, mismatched ones as +∞.</summary>
    public static double MaxAbsError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (double.IsInfinity(expected[i]) || float.IsInfinity(actual[i]))
            {
                if (expected[i] != actual[i])
                {
                    return double.PositiveInfinity;
                }

                continue;
            }

            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }

        return worst;
    }
}

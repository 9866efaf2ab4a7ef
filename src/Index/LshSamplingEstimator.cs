using System.Buffers;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// MagicPIG's importance-sampling estimate of attention. A key j is in the LSH sample with probability
/// p_j (<see cref="ISamplingIndex.InclusionProbability"/>), so Σ_{j∈S} e^{s_j}·v_j / p_j and Σ_{j∈S} e^{s_j} / p_j
/// are unbiased (Horvitz–Thompson) for the full numerator and denominator. Rows the caller attends exactly
/// (sinks, heavy hitters) enter with weight 1 and are dropped from the sample, so nothing is counted twice;
/// the sum stays unbiased for the remaining keys when the exact rows were chosen independently of this
/// index's hashes (another index, another seed). Inclusion is Poisson-like (each key in or out on its own
/// collisions, so the sample size varies), not a fixed-size draw with replacement; its variance,
/// Σ_j e^{2s_j}(1 − p_j)/p_j, is driven by heavy keys with small p, which is why heavy hitters are taken
/// exactly. The output is the ratio of the two sums (self-normalized: slightly biased, but its errors in
/// numerator and denominator largely cancel), and the LSE is the log of the denominator, biased low by
/// Jensen; merging partials weights each by exp(LSE), i.e. by the unbiased denominator, so the merged
/// numerator and denominator stay unbiased. The attention kernel computes exactly this when each sampled
/// score gets the log-weight −log p_j.
/// </summary>
public sealed class LshSamplingEstimator
{
    /// <summary>Floor on p so a key sampled against the odds cannot blow the estimate up to infinity.</summary>
    private const double MinProbability = 1e-12;

    private readonly ISamplingIndex _index;

    /// <summary>Creates an estimator over <paramref name="index"/>.</summary>
    public LshSamplingEstimator(ISamplingIndex index)
    {
        _index = index;
    }

    /// <summary>
    /// Estimates attention of <paramref name="query"/> over all indexed rows. <paramref name="keys"/> and
    /// <paramref name="values"/> are f32 [Count, Dimension] in the index's row order; <paramref name="exactRows"/>
    /// (ascending) are attended with weight 1. Returns the rows attended (sample ∪ exact).
    /// </summary>
    public int Estimate(
        ReadOnlySpan<float> query,
        float scale,
        ReadOnlySpan<float> keys,
        ReadOnlySpan<float> values,
        ReadOnlySpan<int> exactRows,
        Span<float> output,
        out float lse)
    {
        int n = _index.Count;
        int[] rowsArray = ArrayPool<int>.Shared.Rent(n + exactRows.Length);
        float[] floats = ArrayPool<float>.Shared.Rent(2 * (n + exactRows.Length) + query.Length);
        try
        {
            int sampled = _index.Sample(query, rowsArray, out _);
            int kept = RemoveExact(rowsArray.AsSpan(0, sampled), exactRows);
            Span<int> rows = rowsArray.AsSpan(0, kept + exactRows.Length);
            exactRows.CopyTo(rows[kept..]);
            Span<float> dots = floats.AsSpan(0, kept);
            Span<float> logWeights = floats.AsSpan(n + exactRows.Length, rows.Length);
            Span<float> metricQuery = floats.AsSpan(2 * (n + exactRows.Length), query.Length);
            (double dotMean, double norm) = _index.PrepareQuery(query, metricQuery);
            RowDotKernel.GatheredScores(metricQuery, keys, rows[..kept], dots);
            LogWeights(rows[..kept], dots, dotMean, norm, logWeights[..kept]);
            logWeights[kept..].Clear();
            GatheredAttentionKernel.RunRows(query, scale, keys, values, rows, logWeights, output, out lse);
            return rows.Length;
        }
        finally
        {
            ArrayPool<int>.Shared.Return(rowsArray);
            ArrayPool<float>.Shared.Return(floats);
        }
    }

    /// <summary>
    /// −log p_j for sampled <paramref name="rows"/>, given Σq·k_j in <paramref name="metricDots"/> and the
    /// pair <see cref="ISamplingIndex.PrepareQuery"/> returned; add to the scaled scores to turn plain attention
    /// over the sample into the estimator.
    /// </summary>
    public void LogWeights(ReadOnlySpan<int> rows, ReadOnlySpan<float> metricDots, double metricQueryDotMean, double metricQueryNorm, Span<float> logWeights)
    {
        for (int i = 0; i < rows.Length; i++)
        {
            double cosine = _index.CenteredCosine(rows[i], metricDots[i], metricQueryDotMean, metricQueryNorm);
            double p = Math.Max(MinProbability, _index.InclusionProbability(cosine));
            logWeights[i] = (float)-Math.Log(p);
        }
    }

    /// <summary>Drops rows present in the ascending <paramref name="exact"/> list; both inputs ascend. Returns the kept count.</summary>
    private static int RemoveExact(Span<int> sampled, ReadOnlySpan<int> exact)
    {
        int kept = 0;
        int e = 0;
        foreach (int row in sampled)
        {
            while (e < exact.Length && exact[e] < row)
            {
                e++;
            }

            if (e < exact.Length && exact[e] == row)
            {
                continue;
            }

            sampled[kept++] = row;
        }

        return kept;
    }
}

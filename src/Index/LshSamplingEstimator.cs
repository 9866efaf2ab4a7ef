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
/// score gets the log-weight −log p_j, which is what this class computes; the query engine's LSH sampling plan is
/// the one implementation of the estimate.
/// </summary>
public static class LshSamplingEstimator
{
    /// <summary>Floor on p so a key sampled against the odds cannot blow the estimate up to infinity.</summary>
    private const double MinProbability = 1e-12;

    /// <summary>
    /// −log p for sampled row <paramref name="row"/> of <paramref name="index"/>, given Σq·k of its key in
    /// <paramref name="metricDot"/> and the pair <see cref="ISamplingIndex.PrepareQuery"/> returned; add it to the
    /// scaled score to turn plain attention over the sample into the estimator.
    /// </summary>
    public static float LogWeight(ISamplingIndex index, int row, double metricDot, double metricQueryDotMean, double metricQueryNorm)
    {
        double cosine = index.CenteredCosine(row, metricDot, metricQueryDotMean, metricQueryNorm);
        double p = Math.Max(MinProbability, index.InclusionProbability(cosine));
        return (float)-Math.Log(p);
    }
}

namespace KvDb.Index;

/// <summary>
/// An index that can draw a random sample of its keys for a query with a known inclusion probability per key
/// (MagicPIG's LSH sampling): the basis of an unbiased (Horvitz–Thompson) attention estimate, see
/// <see cref="LshSamplingEstimator"/>. Row numbers are the index's own (0 … Count−1, in build order).
/// </summary>
public interface ISamplingIndex : IKeyIndex
{
    /// <summary>Seed of the hash functions: a sample is independent of another index's choices only if their seeds differ.</summary>
    ulong Seed { get; }

    /// <summary>Writes the sampled rows for <paramref name="query"/> (ascending) to <paramref name="rows"/> (length ≥ Count); returns how many.</summary>
    int Sample(ReadOnlySpan<float> query, Span<int> rows, out SearchStats stats);

    /// <summary>The sequence position of row <paramref name="row"/>.</summary>
    long PositionOf(int row);

    /// <summary>
    /// Writes the vector whose dot with a key gives the sampling geometry's inner product to
    /// <paramref name="metricQuery"/> (length Dimension) and returns the pair <see cref="CenteredCosine"/> needs.
    /// </summary>
    (double MetricQueryDotMean, double MetricQueryNorm) PrepareQuery(ReadOnlySpan<float> query, Span<float> metricQuery);

    /// <summary>The cosine, in the sampling geometry, between the query and row <paramref name="row"/>'s key, from that key's dot with the metric query.</summary>
    double CenteredCosine(int row, double metricQueryDotKey, double metricQueryDotMean, double metricQueryNorm);

    /// <summary>Probability that a key at <paramref name="cosine"/> to the query is in the sample.</summary>
    double InclusionProbability(double cosine);
}

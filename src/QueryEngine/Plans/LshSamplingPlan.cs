using System.Buffers;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// MagicPIG's estimator with vAttention's split: per KV head a deterministic set — the sinks, the unindexed tail
/// and the heavy hitters, by default the top 1% of a ranking index (e.g. query-shaped LSH by collision count) for
/// every query row of the GQA group — is attended with weight 1, and the rest is estimated from an independent
/// sample (<see cref="ISamplingIndex"/>, e.g. LSH keys colliding in ≥ T tables) attended with log-weight −log p,
/// p the key's inclusion probability. Because the sample's hash functions are independent of the ranking's
/// (another seed), a key outside the deterministic set is sampled with exactly p whatever the ranking chose, so
/// the weighted sum is unbiased for the remainder and nothing is counted twice. One gathered pass per KV head
/// serves the whole group: a position outside a row's sample and outside the deterministic set gets weight 0
/// (log-weight −∞) for that row.
/// </summary>
public sealed class LshSamplingPlan : IAttentionPlan
{
    /// <summary>Heavy hitters per query row when the request names no budget: 1% of the indexed tokens.</summary>
    public const double DefaultHeavyFraction = 0.01;

    private readonly LayerIndexes _sample;
    private readonly IndexedPlan? _heavy;
    private readonly long _heavyIndexed;

    /// <summary>
    /// Creates the plan over sampling indexes (an <see cref="ISamplingIndex"/> per KV head) and optional heavy-hitter
    /// indexes of the same layer; a sampling heavy-hitter index must hash with another seed than the sampling one,
    /// or the sample would not be independent of it.
    /// </summary>
    public LshSamplingPlan(LayerIndexes sample, LayerIndexes? heavyHitters = null)
    {
        foreach (IndexSegment segment in sample.Segments)
        {
            for (int kv = 0; kv < segment.KvHeads; kv++)
            {
                if (segment[kv] is not ISamplingIndex sampling)
                {
                    throw new ArgumentException($"sampling needs sampling indexes, got \"{sample.Spec}\"", nameof(sample));
                }

                if (heavyHitters is null)
                {
                    continue;
                }

                foreach (IndexSegment heavySegment in heavyHitters.Segments)
                {
                    if (kv < heavySegment.KvHeads && heavySegment[kv] is ISamplingIndex ranking && ranking.Seed == sampling.Seed)
                    {
                        throw new ArgumentException($"the heavy-hitter index \"{heavyHitters.Spec}\" hashes with the sampling index's seed (S={sampling.Seed}); build one of them with another S=", nameof(heavyHitters));
                    }
                }
            }
        }

        _sample = sample;
        _heavy = heavyHitters is null ? null : new IndexedPlan(heavyHitters);
        _heavyIndexed = heavyHitters?.IndexedTokens ?? 0;
        Name = heavyHitters is null ? $"lsh-sampling:{sample.Spec}" : $"lsh-sampling:{sample.Spec}+{heavyHitters.Spec}";
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>Heavy hitters per query row by default: <see cref="DefaultHeavyFraction"/> of <paramref name="indexedTokens"/>, at least 16.</summary>
    public static int HeavyBudget(long indexedTokens) => (int)Math.Min(indexedTokens, Math.Max(16, (long)Math.Ceiling(indexedTokens * DefaultHeavyFraction)));

    /// <inheritdoc />
    /// <remarks>The sample is estimated as if keys were uncorrelated with the query (cosine 0): real attention samples more.</remarks>
    public PlanEstimate Estimate(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        long groupRows = (long)query.NumQueries * g.GroupSize;
        long heavy = _heavy is null ? 0 : Math.Min(_heavyIndexed, groupRows * HeavyBudgetFor(query));
        double sampled = 0;
        foreach (IndexSegment segment in _sample.Segments)
        {
            var index = (ISamplingIndex)segment[kvHead];
            sampled += index.Count * Math.Min(1.0, groupRows * index.InclusionProbability(0));
        }

        long rows = Math.Min(layer.Tokens - query.Exclude.CountWithin(layer.Tokens), AttentionSinks.End(layer.Tokens) + (layer.Tokens - _sample.IndexedTokens) + heavy + (long)sampled);
        return new PlanEstimate(rows, (rows * 2L * g.RowBytes) + ((long)sampled * g.RowBytes) + (heavy * g.HeadDim * sizeof(float)));
    }

    /// <inheritdoc />
    public HeadSelection Select(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int rows = query.NumQueries * g.GroupSize;

        // The deterministic set, sorted: sinks, unindexed tail, heavy hitters of every row of the group.
        long scanned = 0;
        long[] heavy = _heavy is null ? [] : _heavy.SelectPositions(layer, query, kvHead, new SearchParameters((int)HeavyBudgetFor(query)), out scanned);
        long sinks = AttentionSinks.End(layer.Tokens);
        var exactList = new long[heavy.Length + sinks + (layer.Tokens - _sample.IndexedTokens)];
        heavy.CopyTo(exactList, 0);
        int e = heavy.Length;
        for (long p = 0; p < sinks; p++)
        {
            exactList[e++] = p;
        }

        for (long p = _sample.IndexedTokens; p < layer.Tokens; p++)
        {
            exactList[e++] = p;
        }

        long[] exact = IndexedPlan.SortedDistinct(exactList, long.MaxValue, default);

        // Each segment is sampled by its own index, with its own inclusion probabilities: the weighted sum over a
        // segment estimates that segment's share, and the shares add up. A sample is (group row, segment, index row).
        int segments = _sample.Segments.Count;
        int maxCount = 1;
        foreach (IndexSegment segment in _sample.Segments)
        {
            maxCount = Math.Max(maxCount, segment[kvHead].Count);
        }

        int[] sampledRows = ArrayPool<int>.Shared.Rent(maxCount);
        var samples = new List<(int Row, int Segment, int IndexRow, long Position)>();
        try
        {
            for (int r = 0; r < rows; r++)
            {
                ReadOnlySpan<float> q = g.GroupRow(query.Queries, kvHead, r);
                for (int s = 0; s < segments; s++)
                {
                    var index = (ISamplingIndex)_sample.Segments[s][kvHead];
                    int n = index.Sample(q, sampledRows, out _);
                    for (int i = 0; i < n; i++)
                    {
                        long p = index.PositionOf(sampledRows[i]);
                        if (Array.BinarySearch(exact, p) < 0)
                        {
                            samples.Add((r, s, sampledRows[i], p));
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(sampledRows);
        }

        var union = new long[exact.Length + samples.Count];
        exact.CopyTo(union, 0);
        for (int i = 0; i < samples.Count; i++)
        {
            union[exact.Length + i] = samples[i].Position;
        }

        long[] positions = IndexedPlan.SortedDistinct(union, layer.Tokens, query.Exclude);

        // Weights need Σq·k of each sampled key: read the sampled keys once, in position order.
        var isExact = new bool[positions.Length];
        int sampledCount = 0;
        for (int j = 0; j < positions.Length; j++)
        {
            isExact[j] = Array.BinarySearch(exact, positions[j]) >= 0;
            sampledCount += isExact[j] ? 0 : 1;
        }

        var sampledPositions = new long[sampledCount];
        for (int j = 0, k = 0; j < positions.Length; j++)
        {
            if (!isExact[j])
            {
                sampledPositions[k++] = positions[j];
            }
        }

        float[] keys = ArrayPool<float>.Shared.Rent(Math.Max(1, sampledCount * d));
        try
        {
            KvBlockReader.ReadHeadRowsAt(g, layer.Blocks, kvHead, values: false, sampledPositions, keys.AsSpan(0, sampledCount * d));
            var logWeights = new float[(long)rows * positions.Length];
            for (int r = 0; r < rows; r++)
            {
                Span<float> w = logWeights.AsSpan(r * positions.Length, positions.Length);
                for (int j = 0; j < positions.Length; j++)
                {
                    w[j] = isExact[j] ? 0f : float.NegativeInfinity;
                }
            }

            Span<float> metricQuery = stackalloc float[d];
            Span<float> dot = stackalloc float[1];
            int preparedRow = -1;
            int preparedSegment = -1;
            (double DotMean, double Norm) prepared = default;
            foreach ((int r, int s, int indexRow, long p) in samples)
            {
                int j = Array.BinarySearch(positions, p);
                if (j < 0)
                {
                    continue; // excluded range
                }

                var index = (ISamplingIndex)_sample.Segments[s][kvHead];
                if (r != preparedRow || s != preparedSegment)
                {
                    prepared = index.PrepareQuery(g.GroupRow(query.Queries, kvHead, r), metricQuery);
                    (preparedRow, preparedSegment) = (r, s);
                }

                RowDotKernel.Scores(metricQuery, keys.AsSpan(Array.BinarySearch(sampledPositions, p) * d, d), dot);
                logWeights[((long)r * positions.Length) + j] = LshSamplingEstimator.LogWeight(index, indexRow, dot[0], prepared.DotMean, prepared.Norm);
            }

            scanned += sampledCount;
            return HeadSelection.Gathered(positions, logWeights, scanned, scanned * g.RowBytes);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(keys);
        }
    }

    private long HeavyBudgetFor(AttentionQuery query) => query.Plan.Budget > 0 ? Math.Min(int.MaxValue, query.Plan.Budget) : HeavyBudget(_heavyIndexed);
}

using KvDb.Index;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// MagicPIG's estimator with vAttention's split, all from LSH: per KV head a deterministic set — the sinks,
/// the unindexed tail and the heavy hitters, by default the top 1% of a query-shaped LSH index by collision
/// count (<see cref="HeavySpec"/>) for every query row of the GQA group — is attended with weight 1, and the
/// rest is estimated from an independent LSH sample (<see cref="SampleSpec"/>: keys colliding in ≥ T
/// tables) attended with log-weight −log p, p the key's inclusion probability. Because the sample's
/// hyperplanes are independent of the ranking's (different seed), a key outside the deterministic set is
/// sampled with exactly p whatever the ranking chose, so the weighted sum is unbiased for the remainder and
/// nothing is counted twice. One gathered pass per KV head serves the whole group: a position outside a
/// row's sample and outside the deterministic set gets weight 0 (log-weight −∞) for that row.
/// </summary>
public sealed class LshSamplingPlan : IAttentionPlan
{
    /// <summary>
    /// The sampling index the planner builds: plain SimHash planes (query-shaped ones sample far more keys), its own
    /// seed, and MagicPIG's larger setting (K=10, L=150: more tables keep the estimator's variance down; the
    /// top-k default K=8, L=75 is for ranking).
    /// </summary>
    public const string SampleSpec = "lsh:K=10,L=150,Q=0,S=7";

    /// <summary>The heavy-hitter index the planner builds: the query-shaped LSH index of LSH_TOP_K, ranked by collision count.</summary>
    public const string HeavySpec = "lsh";

    /// <summary>Heavy hitters per query row when the request names no budget: 1% of the indexed tokens.</summary>
    public const double DefaultHeavyFraction = 0.01;

    private readonly LayerIndexes _lsh;
    private readonly LayerIndexes? _heavy;

    /// <summary>
    /// Creates the plan over sampling indexes (<see cref="LshIndex"/> per KV head, e.g. <see cref="SampleSpec"/>)
    /// and optional heavy-hitter indexes of the same layer (e.g. <see cref="HeavySpec"/>); an LSH heavy-hitter
    /// index must use another seed than the sampling one, or the sample would not be independent of it.
    /// </summary>
    public LshSamplingPlan(LayerIndexes lsh, LayerIndexes? heavyHitters = null)
    {
        foreach (IndexSegment segment in lsh.Segments)
        {
            for (int kv = 0; kv < segment.KvHeads; kv++)
            {
                if (segment[kv] is not LshIndex sample)
                {
                    throw new ArgumentException($"LSH sampling needs LSH indexes, got \"{lsh.Spec}\"", nameof(lsh));
                }

                if (heavyHitters is null)
                {
                    continue;
                }

                foreach (IndexSegment heavySegment in heavyHitters.Segments)
                {
                    if (kv < heavySegment.KvHeads && heavySegment[kv] is LshIndex ranking && ranking.Seed == sample.Seed)
                    {
                        throw new ArgumentException($"the heavy-hitter index \"{heavyHitters.Spec}\" hashes with the sampling index's seed (S={sample.Seed}); build one of them with another S=", nameof(heavyHitters));
                    }
                }
            }
        }

        _lsh = lsh;
        _heavy = heavyHitters;
    }

    /// <inheritdoc />
    public string Name => _heavy is null ? $"lsh-sampling:{_lsh.Spec}" : $"lsh-sampling:{_lsh.Spec}+{_heavy.Spec}";

    /// <inheritdoc />
    public AttentionCounters Execute(LayerSnapshot layer, AttentionQuery query, Span<float> output, Span<float> lse)
    {
        AttentionGeometry g = layer.Model.Geometry;
        var counters = default(AttentionCounters);
        for (int kv = 0; kv < g.NumKvHeads; kv++)
        {
            (long[] positions, float[] logWeights, long scanned) = Prepare(layer, query, kv);
            counters += GatheredAttentionKernel.Run(g, layer.Blocks, kv, positions, query.Queries, query.NumQueries, logWeights, output, lse);
            counters += new AttentionCounters(scanned, 0, scanned * g.RowBytes);
        }

        return counters;
    }

    /// <inheritdoc />
    public (long[] Selected, int[] Counts) Selection(LayerSnapshot layer, AttentionQuery query)
    {
        var all = new List<long>();
        var counts = new int[layer.Model.NumKvHeads];
        for (int kv = 0; kv < counts.Length; kv++)
        {
            long[] positions = Prepare(layer, query, kv).Positions;
            all.AddRange(positions);
            counts[kv] = positions.Length;
        }

        return ([.. all], counts);
    }

    /// <summary>
    /// The union of positions KV head <paramref name="kvHead"/> gathers and the [rows, positions] log-weights
    /// (rows = query tokens × group); also the key-sized vectors the heavy-hitter search scored plus the
    /// sampled keys read to weigh the sample.
    /// </summary>
    public (long[] Positions, float[] LogWeights, long Scanned) Prepare(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int rows = query.NumQueries * g.GroupSize;
        long xs = query.ExcludeEnd > query.ExcludeStart ? query.ExcludeStart : 0;
        long xe = query.ExcludeEnd > query.ExcludeStart ? query.ExcludeEnd : 0;
        bool Keep(long p) => p >= 0 && p < layer.Tokens && (p < xs || p >= xe);

        // The deterministic set: sinks, unindexed tail, heavy hitters of every row of the group.
        var exact = new HashSet<long>();
        for (long p = 0; p < Math.Min(IndexedPlan.SinkTokens, layer.Tokens); p++)
        {
            exact.Add(p);
        }

        for (long p = _lsh.IndexedTokens; p < layer.Tokens; p++)
        {
            exact.Add(p);
        }

        long scanned = 0;
        if (_heavy is not null)
        {
            long budget = query.Plan.Budget > 0 ? query.Plan.Budget : HeavyBudget(_heavy.IndexedTokens);
            var heavy = new IndexedPlan(_heavy);
            foreach (long p in heavy.Select(layer, query with { Plan = query.Plan with { Budget = budget } }, kvHead, out scanned))
            {
                exact.Add(p);
            }
        }

        // Each segment is sampled by its own index, with its own inclusion probabilities: the weighted sum
        // over a segment estimates that segment's share, and the shares add up.
        int segments = _lsh.Segments.Count;
        var samples = new List<int>[rows, segments];
        var union = new HashSet<long>(exact);
        for (int s = 0; s < segments; s++)
        {
            var lsh = (LshIndex)_lsh.Segments[s][kvHead];
            var sampledRows = new int[lsh.Count];
            for (int r = 0; r < rows; r++)
            {
                int n = lsh.Sample(Row(query, g, kvHead, r), sampledRows, out _);
                var kept = new List<int>(n);
                for (int i = 0; i < n; i++)
                {
                    long p = lsh.PositionOf(sampledRows[i]);
                    if (!exact.Contains(p))
                    {
                        kept.Add(sampledRows[i]);
                        union.Add(p);
                    }
                }

                samples[r, s] = kept;
            }
        }

        var positionList = new List<long>(union.Count);
        foreach (long p in union)
        {
            if (Keep(p))
            {
                positionList.Add(p);
            }
        }

        positionList.Sort();
        long[] positions = [.. positionList];
        var column = new Dictionary<long, int>(positions.Length);
        for (int j = 0; j < positions.Length; j++)
        {
            column[positions[j]] = j;
        }

        // Weights need Σq·k of each sampled key: read the sampled keys once, in position order.
        var sampledPositions = new List<long>();
        foreach (long p in positions)
        {
            if (!exact.Contains(p))
            {
                sampledPositions.Add(p);
            }
        }

        var keys = new float[sampledPositions.Count * d];
        KvBlockReader.ReadHeadRowsAt(g, layer.Blocks, kvHead, values: false, sampledPositions.ToArray(), keys);
        var keyIndex = new Dictionary<long, int>(sampledPositions.Count);
        for (int i = 0; i < sampledPositions.Count; i++)
        {
            keyIndex[sampledPositions[i]] = i;
        }

        var logWeights = new float[(long)rows * positions.Length];
        var metricQuery = new float[d];
        var dots = new float[1];
        var weight = new float[1];
        for (int r = 0; r < rows; r++)
        {
            Span<float> w = logWeights.AsSpan(r * positions.Length, positions.Length);
            for (int j = 0; j < positions.Length; j++)
            {
                w[j] = exact.Contains(positions[j]) ? 0f : float.NegativeInfinity;
            }

            for (int s = 0; s < segments; s++)
            {
                var lsh = (LshIndex)_lsh.Segments[s][kvHead];
                var estimator = new LshSamplingEstimator(lsh);
                (double dotMean, double norm) = lsh.PrepareQuery(Row(query, g, kvHead, r), metricQuery);
                foreach (int row in samples[r, s])
                {
                    long p = lsh.PositionOf(row);
                    if (!column.TryGetValue(p, out int j))
                    {
                        continue; // excluded range
                    }

                    RowDotKernel.Scores(metricQuery, keys.AsSpan(keyIndex[p] * d, d), dots);
                    estimator.LogWeights([row], dots, dotMean, norm, weight);
                    w[j] = weight[0];
                }
            }
        }

        return (positions, logWeights, scanned + sampledPositions.Count);
    }

    /// <summary>Heavy hitters per query row by default: <see cref="DefaultHeavyFraction"/> of <paramref name="indexedTokens"/>, at least 16.</summary>
    public static int HeavyBudget(long indexedTokens) => (int)Math.Min(indexedTokens, Math.Max(16, (long)Math.Ceiling(indexedTokens * DefaultHeavyFraction)));

    private static ReadOnlySpan<float> Row(AttentionQuery query, AttentionGeometry g, int kvHead, int r)
    {
        int t = r / g.GroupSize;
        int gi = r % g.GroupSize;
        return query.Queries.AsSpan(((t * g.NumQueryHeads) + (kvHead * g.GroupSize) + gi) * g.HeadDim, g.HeadDim);
    }
}

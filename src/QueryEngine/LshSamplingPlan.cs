using KvDb.Index;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// MagicPIG's estimator as a plan: per query row, the LSH sample (keys colliding in ≥ T tables) is
/// attended with log-weight −log p (p its inclusion probability), while a deterministic set — the sinks,
/// the unindexed tail and, when a heavy-hitter index is given, its top candidates (vAttention's split:
/// exact heavy hitters, sampled tail) — is attended with weight 1 and never through the sample. One
/// gathered pass per KV head serves the whole GQA group: a position outside a row's sample and outside
/// the deterministic set gets weight 0 (log-weight −∞) for that row.
/// </summary>
public sealed class LshSamplingPlan : IAttentionPlan
{
    private readonly LayerIndexes _lsh;
    private readonly LayerIndexes? _heavy;

    /// <summary>
    /// Creates the plan over LSH indexes (<see cref="LshIndex"/> per KV head; build them with "lsh:Q=0" —
    /// query-shaped planes sample far more keys) and optional heavy-hitter indexes of the same layer.
    /// </summary>
    public LshSamplingPlan(LayerIndexes lsh, LayerIndexes? heavyHitters = null)
    {
        foreach (IndexSegment segment in lsh.Segments)
        {
            for (int kv = 0; kv < segment.KvHeads; kv++)
            {
                if (segment[kv] is not LshIndex)
                {
                    throw new ArgumentException($"LSH sampling needs LSH indexes, got \"{lsh.Spec}\"", nameof(lsh));
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
    /// (rows = query tokens × group); also the keys read to weigh the sample.
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

        if (_heavy is not null)
        {
            var heavy = new IndexedPlan(_heavy);
            foreach (long p in heavy.Select(layer, query, kvHead, out _))
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

        return (positions, logWeights, sampledPositions.Count);
    }

    private static ReadOnlySpan<float> Row(AttentionQuery query, AttentionGeometry g, int kvHead, int r)
    {
        int t = r / g.GroupSize;
        int gi = r % g.GroupSize;
        return query.Queries.AsSpan(((t * g.NumQueryHeads) + (kvHead * g.GroupSize) + gi) * g.HeadDim, g.HeadDim);
    }
}

using KvDb.Index;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// A sparse plan over per-KV-head indexes: for each KV head it asks the index for candidates of every
/// query row of its GQA group (one selection serves the whole group), adds the attention sinks (first
/// <see cref="SinkTokens"/> positions) and the unindexed tail, drops the exclude range, and runs exact
/// attention over the gathered rows for output and LSE. The request's budget (tokens per query row and
/// KV head; 0 = the family default) bounds what each query row selects from the indexed tokens: a view
/// of several segments (a shared base and a suffix) searches each with the whole budget and keeps the
/// budget's best candidates by exact score.
/// </summary>
public sealed class IndexedPlan : IAttentionPlan
{
    /// <summary>Leading positions every sparse plan attends (attention sinks).</summary>
    public const int SinkTokens = 4;

    private readonly LayerIndexes _indexes;

    /// <summary>Creates a plan over <paramref name="indexes"/> (built for the layer it will be run on).</summary>
    public IndexedPlan(LayerIndexes indexes)
    {
        _indexes = indexes;
    }

    /// <inheritdoc />
    public string Name => $"indexed:{_indexes.Spec}";

    /// <summary>The index family spec a sparse plan kind uses by default.</summary>
    public static string SpecFor(PlanKind kind) => kind switch
    {
        PlanKind.BlockTopK => "block",
        PlanKind.CentroidTopK => "centroid:L2",
        PlanKind.LshTopK => "lsh",
        PlanKind.AnnTopK => "graph",
        _ => throw KvDbException.Invalid($"plan kind {kind} is not an indexed plan"),
    };

    /// <inheritdoc />
    public AttentionCounters Execute(LayerSnapshot layer, AttentionQuery query, Span<float> output, Span<float> lse)
    {
        AttentionGeometry g = layer.Model.Geometry;
        Check(layer, query);
        var counters = default(AttentionCounters);
        for (int kv = 0; kv < g.NumKvHeads; kv++)
        {
            long[] positions = Select(layer, query, kv, out long scanned);
            counters += GatheredAttentionKernel.Run(g, layer.Blocks, kv, positions, query.Queries, query.NumQueries, ReadOnlySpan<float>.Empty, output, lse);
            counters += new AttentionCounters(scanned, 0, scanned * g.HeadDim * sizeof(float));
        }

        return counters;
    }

    /// <inheritdoc />
    public (long[] Selected, int[] Counts) Selection(LayerSnapshot layer, AttentionQuery query)
    {
        Check(layer, query);
        int heads = layer.Model.NumKvHeads;
        var all = new List<long>();
        var counts = new int[heads];
        for (int kv = 0; kv < heads; kv++)
        {
            long[] positions = Select(layer, query, kv, out _);
            all.AddRange(positions);
            counts[kv] = positions.Length;
        }

        return ([.. all], counts);
    }

    /// <summary>
    /// Cuts <paramref name="candidates"/> to the <paramref name="budget"/> with the highest exact q·k (the order of
    /// q·k is that of the scaled scores); returns the keys read to score them.
    /// </summary>
    private static long KeepBest(LayerSnapshot layer, int kvHead, ReadOnlySpan<float> q, List<long> candidates, int budget)
    {
        int d = layer.Model.HeadDim;
        candidates.Sort();
        long[] positions = [.. candidates];
        var keys = new float[positions.Length * d];
        KvBlockReader.ReadHeadRowsAt(layer.Model.Geometry, layer.Blocks, kvHead, values: false, positions, keys);
        var scores = new float[positions.Length];
        RowDotKernel.Scores(q, keys, scores);
        var best = new int[budget];
        int kept = TopKSelector.Select(scores, budget, best);
        candidates.Clear();
        for (int i = 0; i < kept; i++)
        {
            candidates.Add(positions[best[i]]);
        }

        return positions.Length;
    }

    /// <summary>Positions KV head <paramref name="kvHead"/> attends for <paramref name="query"/>, ascending.</summary>
    public long[] Select(LayerSnapshot layer, AttentionQuery query, int kvHead, out long scanned)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;

        // Every segment gets the budget an index over all indexed tokens would get, so a key that would be a
        // top candidate of one whole-layer index is one of its own segment's; the segments' candidates are then
        // cut back to the budget by exact score, so a shared base plus a suffix attends what one index would.
        SearchParameters parameters = query.Plan.Budget > 0
            ? new SearchParameters((int)Math.Min(int.MaxValue, query.Plan.Budget))
            : IndexFactory.DefaultParameters(_indexes.Spec, _indexes.IndexedTokens);
        long xs = query.ExcludeEnd > query.ExcludeStart ? query.ExcludeStart : 0;
        long xe = query.ExcludeEnd > query.ExcludeStart ? query.ExcludeEnd : 0;
        var chosen = new HashSet<long>();
        var found = new long[parameters.Budget];
        var rowCandidates = new List<long>();
        var rowSeen = new HashSet<long>();
        scanned = 0;
        for (int t = 0; t < query.NumQueries; t++)
        {
            for (int gi = 0; gi < g.GroupSize; gi++)
            {
                ReadOnlySpan<float> q = query.Queries.AsSpan(((t * g.NumQueryHeads) + (kvHead * g.GroupSize) + gi) * d, d);
                rowCandidates.Clear();
                rowSeen.Clear();
                foreach (IndexSegment segment in _indexes.Segments)
                {
                    int got = segment[kvHead].Candidates(q, parameters, found, out SearchStats stats);
                    scanned += stats.VectorsScanned;
                    for (int i = 0; i < got; i++)
                    {
                        if (rowSeen.Add(found[i]))
                        {
                            rowCandidates.Add(found[i]);
                        }
                    }
                }

                if (rowCandidates.Count > parameters.Budget)
                {
                    scanned += KeepBest(layer, kvHead, q, rowCandidates, parameters.Budget);
                }

                foreach (long p in rowCandidates)
                {
                    chosen.Add(p);
                }
            }
        }

        for (long p = 0; p < Math.Min(SinkTokens, layer.Tokens); p++)
        {
            chosen.Add(p);
        }

        for (long p = _indexes.IndexedTokens; p < layer.Tokens; p++)
        {
            chosen.Add(p);
        }

        var positions = new List<long>(chosen.Count);
        foreach (long p in chosen)
        {
            if (p >= 0 && p < layer.Tokens && (p < xs || p >= xe))
            {
                positions.Add(p);
            }
        }

        positions.Sort();
        return [.. positions];
    }

    private void Check(LayerSnapshot layer, AttentionQuery query)
    {
        int kvHeads = _indexes.Segments.Count == 0 ? layer.Model.NumKvHeads : _indexes.Segments[0].KvHeads;
        if (kvHeads != layer.Model.NumKvHeads || _indexes.IndexedTokens > layer.Tokens)
        {
            throw KvDbException.Invalid($"the indexes ({kvHeads} KV heads, {_indexes.IndexedTokens} tokens) were not built for layer {layer.Layer} ({layer.Model.NumKvHeads} KV heads, {layer.Tokens} tokens)");
        }

        long expected = (long)query.NumQueries * layer.Model.NumQueryHeads * layer.Model.HeadDim;
        if (query.NumQueries <= 0 || query.Queries.Length != expected)
        {
            throw KvDbException.Invalid($"queries must have shape [q ≥ 1, {layer.Model.NumQueryHeads}, {layer.Model.HeadDim}]");
        }
    }
}

using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// A sparse plan over per-KV-head indexes: for each KV head it asks the index for candidates of every
/// query row of its GQA group (one selection serves the whole group), adds the attention sinks
/// (<see cref="AttentionSinks"/>) and the unindexed tail, and drops the exclude range. The request's budget
/// (tokens per query row and KV head; 0 = the family default) bounds what each query row selects from the
/// indexed tokens: a view of several segments (a shared base and a suffix) searches each with the whole
/// budget and keeps the budget's best candidates by exact score.
/// </summary>
public sealed class IndexedPlan : IAttentionPlan
{
    private readonly LayerIndexes _indexes;

    /// <summary>Creates a plan over <paramref name="indexes"/> (built for the layer it will be run on).</summary>
    public IndexedPlan(LayerIndexes indexes)
    {
        _indexes = indexes;
    }

    /// <inheritdoc />
    public string Name => $"indexed:{_indexes.Spec}";

    /// <summary>The search parameters every query row uses: the request's budget, or the family default for the indexed tokens.</summary>
    public SearchParameters Parameters(PlanRequest request) => request.Budget > 0
        ? new SearchParameters((int)Math.Min(int.MaxValue, request.Budget))
        : IndexFactory.DefaultParameters(_indexes.Spec, _indexes.IndexedTokens);

    /// <inheritdoc />
    public PlanEstimate Estimate(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        long groupRows = (long)query.NumQueries * g.GroupSize;
        long found = Math.Min(_indexes.IndexedTokens, groupRows * Math.Min(Parameters(query.Plan).Budget, _indexes.IndexedTokens));
        long rows = Math.Min(layer.Tokens - query.Exclude.CountWithin(layer.Tokens), AttentionSinks.End(layer.Tokens) + (layer.Tokens - _indexes.IndexedTokens) + found);

        // Finding a candidate costs about one key-sized read (a summary, a centroid, a rescored key).
        return new PlanEstimate(rows, (rows * 2L * g.RowBytes) + (found * g.HeadDim * sizeof(float)));
    }

    /// <inheritdoc />
    public HeadSelection Select(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        CheckBuiltFor(layer);
        long[] positions = SelectPositions(layer, query, kvHead, Parameters(query.Plan), out long scanned);
        return HeadSelection.Gathered(positions, null, scanned, scanned * layer.Model.HeadDim * sizeof(float));
    }

    /// <summary>
    /// Positions KV head <paramref name="kvHead"/> attends for <paramref name="query"/> with <paramref name="parameters"/>,
    /// ascending: sinks, the unindexed tail and every group row's best candidates, outside the exclude range.
    /// <paramref name="scanned"/> counts key-sized vectors read (index search plus rescoring).
    /// </summary>
    internal long[] SelectPositions(LayerSnapshot layer, AttentionQuery query, int kvHead, SearchParameters parameters, out long scanned)
    {
        AttentionGeometry g = layer.Model.Geometry;

        // Every segment gets the budget an index over all indexed tokens would get, so a key that would be a
        // top candidate of one whole-layer index is one of its own segment's; the segments' candidates are then
        // cut back to the budget by exact score, so a shared base plus a suffix attends what one index would.
        var chosen = new HashSet<long>();
        // Candidates writes at most min(budget, keys in the segment): a huge budget needs no huge buffer.
        var found = new long[(int)Math.Min(parameters.Budget, Math.Max(1, _indexes.IndexedTokens))];
        var rowCandidates = new List<long>();
        var rowSeen = new HashSet<long>();
        scanned = 0;
        int groupRows = query.NumQueries * g.GroupSize;
        for (int r = 0; r < groupRows; r++)
        {
            ReadOnlySpan<float> q = g.GroupRow(query.Queries, kvHead, r);
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

        for (long p = 0; p < AttentionSinks.End(layer.Tokens); p++)
        {
            chosen.Add(p);
        }

        for (long p = _indexes.IndexedTokens; p < layer.Tokens; p++)
        {
            chosen.Add(p);
        }

        ExcludeRange exclude = query.Exclude;
        var positions = new List<long>(chosen.Count);
        foreach (long p in chosen)
        {
            if (p >= 0 && p < layer.Tokens && !exclude.Contains(p))
            {
                positions.Add(p);
            }
        }

        positions.Sort();
        return [.. positions];
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

    private void CheckBuiltFor(LayerSnapshot layer)
    {
        int kvHeads = _indexes.Segments.Count == 0 ? layer.Model.NumKvHeads : _indexes.Segments[0].KvHeads;
        if (kvHeads != layer.Model.NumKvHeads || _indexes.IndexedTokens > layer.Tokens)
        {
            throw KvDbException.Invalid($"the indexes ({kvHeads} KV heads, {_indexes.IndexedTokens} tokens) were not built for layer {layer.Layer} ({layer.Model.NumKvHeads} KV heads, {layer.Tokens} tokens)");
        }
    }
}

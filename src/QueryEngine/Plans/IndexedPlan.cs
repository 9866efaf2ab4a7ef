using System.Buffers;
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
        int groupRows = query.NumQueries * g.GroupSize;
        long sinks = AttentionSinks.End(layer.Tokens);
        long tail = layer.Tokens - _indexes.IndexedTokens;

        // Candidates writes at most min(budget, keys in the segment): a huge budget needs no huge buffer. Segments
        // cover disjoint positions, so a row's candidates from all segments are distinct without a set.
        int perSegment = (int)Math.Min(parameters.Budget, Math.Max(1, _indexes.IndexedTokens));
        int perRow = (int)Math.Min((long)perSegment * _indexes.Segments.Count, Math.Max(1, _indexes.IndexedTokens));
        long capacity = ((long)groupRows * Math.Min(parameters.Budget, perRow)) + sinks + tail;
        long[] all = ArrayPool<long>.Shared.Rent((int)Math.Min(int.MaxValue - 64, capacity));
        long[] row = ArrayPool<long>.Shared.Rent(perRow);
        GroupResults? group = null;
        try
        {
            int count = 0;
            scanned = 0;
            group = GroupResults.Search(_indexes, g, query, kvHead, parameters, perSegment, ref scanned);
            for (int r = 0; r < groupRows; r++)
            {
                ReadOnlySpan<float> q = g.GroupRow(query.Queries, kvHead, r);
                int found = 0;
                for (int s = 0; s < _indexes.Segments.Count; s++)
                {
                    Span<long> into = row.AsSpan(found, Math.Min(perSegment, perRow - found));
                    if (group is not null)
                    {
                        found += group.CopyRow(s, r, into);
                    }
                    else
                    {
                        found += _indexes.Segments[s][kvHead].Candidates(q, parameters, into, out SearchStats stats);
                        scanned += stats.VectorsScanned;
                    }
                }

                found = Distinct(row.AsSpan(0, found));

                // Every segment got the budget an index over all indexed tokens would get, so a key that would be a top
                // candidate of one whole-layer index is one of its own segment's; the union is then cut back to the
                // budget by exact score, so a shared base plus a suffix attends what one index would.
                if (found > parameters.Budget)
                {
                    scanned += KeepBest(layer, kvHead, q, row.AsSpan(0, found), parameters.Budget);
                    found = parameters.Budget;
                }

                row.AsSpan(0, found).CopyTo(all.AsSpan(count));
                count += found;
            }

            for (long p = 0; p < sinks; p++)
            {
                all[count++] = p;
            }

            for (long p = _indexes.IndexedTokens; p < layer.Tokens; p++)
            {
                all[count++] = p;
            }

            return SortedDistinct(all.AsSpan(0, count), layer.Tokens, query.Exclude);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(all);
            ArrayPool<long>.Shared.Return(row);
            group?.Dispose();
        }
    }

    /// <summary>Sorts <paramref name="positions"/> and moves its distinct values to the front; returns how many.</summary>
    private static int Distinct(Span<long> positions)
    {
        positions.Sort();
        int kept = 0;
        for (int i = 0; i < positions.Length; i++)
        {
            if (kept == 0 || positions[kept - 1] != positions[i])
            {
                positions[kept++] = positions[i];
            }
        }

        return kept;
    }

    /// <summary>The distinct positions of <paramref name="positions"/> in [0, tokens) outside <paramref name="exclude"/>, ascending (sorts in place).</summary>
    internal static long[] SortedDistinct(Span<long> positions, long tokens, ExcludeRange exclude)
    {
        int distinct = Distinct(positions);
        int kept = 0;
        foreach (long p in positions[..distinct])
        {
            if (p >= 0 && p < tokens && !exclude.Contains(p))
            {
                positions[kept++] = p;
            }
        }

        return positions[..kept].ToArray();
    }

    /// <summary>
    /// Keeps in <paramref name="candidates"/>[..budget] the <paramref name="budget"/> with the highest exact q·k (the order
    /// of q·k is that of the scaled scores); returns the keys read to score them.
    /// </summary>
    private static long KeepBest(LayerSnapshot layer, int kvHead, ReadOnlySpan<float> q, Span<long> candidates, int budget)
    {
        int d = layer.Model.HeadDim;
        int n = candidates.Length;
        candidates.Sort();
        long[] positions = ArrayPool<long>.Shared.Rent(n);
        float[] keys = ArrayPool<float>.Shared.Rent(n * d);
        float[] scores = ArrayPool<float>.Shared.Rent(n);
        int[] best = ArrayPool<int>.Shared.Rent(budget);
        try
        {
            candidates.CopyTo(positions);
            KvBlockReader.ReadHeadRowsAt(layer.Model.Geometry, layer.Blocks, kvHead, values: false, positions.AsSpan(0, n), keys.AsSpan(0, n * d));
            RowDotKernel.Scores(q, keys.AsSpan(0, n * d), scores.AsSpan(0, n));
            int kept = TopKSelector.Select(scores.AsSpan(0, n), budget, best.AsSpan(0, budget));
            for (int i = 0; i < kept; i++)
            {
                candidates[i] = positions[best[i]];
            }

            return n;
        }
        finally
        {
            ArrayPool<long>.Shared.Return(positions);
            ArrayPool<float>.Shared.Return(keys);
            ArrayPool<float>.Shared.Return(scores);
            ArrayPool<int>.Shared.Return(best);
        }
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

using System.Buffers;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// AlayaDB's DIPR (arXiv 2504.10326): for each query row r of a KV head's GQA group, every token t with
/// q_r·k_t ≥ max_t' q_r·k_t' − β, i.e. whose softmax weight is at least e^(−β·scale) of the row's largest. Unlike a
/// top-k the count adapts to the head: a peaked head keeps a handful of tokens, a diffuse one thousands. The head
/// attends the union over its rows plus the sinks, outside the exclude range, with weight 1.
/// Two ways find the set, with the same exact filter (<see cref="RowRanges"/>), so they return the same positions:
/// a flat scan of the head's keys in chunks, and — when a view of <see cref="IRangeSearchIndex"/> indexes is given —
/// a range search: a lower bound lb on each row's best from exact scores of the sinks, the unindexed tail and a few
/// index candidates, then <see cref="IRangeSearchIndex.AtLeast"/>(q, lb − β) on every segment (a superset of every
/// key with q·k ≥ best − β, since best ≥ lb), rescored exactly. When the superset is more than
/// <see cref="RangeSearchLimit"/> of the live tokens, scattered rescoring would cost more than streaming every key,
/// and the head is scanned instead.
/// </summary>
public sealed class DiprPlan : IAttentionPlan
{
    /// <summary>The weight ratio β = 0 stands for: keep every token whose weight is ≥ 1e-3 of its row's largest.</summary>
    public const double DefaultAlpha = 1e-3;

    /// <summary>Share of the live tokens above which a head's range-search superset is scanned instead.</summary>
    public const double RangeSearchLimit = 0.25;

    /// <summary>Keys the scan reads per chunk (whole blocks; at least one block): bounds its buffers, not the layer's.</summary>
    public const int ScanChunkTokens = 1024;

    /// <summary>Index candidates per query row and segment scored exactly to raise the lower bound on the row's best.</summary>
    public const int ProbeBudget = 16;

    /// <summary>
    /// The share of live tokens <see cref="Estimate"/> expects a head to attend besides the sinks (and the unindexed
    /// tail). The true count is only known after the search; 2% matches the top-k plans' default budget, so the
    /// optimizer compares DIPR with them on equal terms, and is about what the default α keeps on peaked heads.
    /// </summary>
    public const double ExpectedShare = 0.02;

    private readonly LayerIndexes? _indexes;

    /// <summary>
    /// Creates the plan: a flat scan when <paramref name="indexes"/> is null, otherwise a range search over them
    /// (built for the layer it will run on; every KV head's index must be an <see cref="IRangeSearchIndex"/>).
    /// </summary>
    public DiprPlan(LayerIndexes? indexes = null)
    {
        if (indexes is not null)
        {
            foreach (IndexSegment segment in indexes.Segments)
            {
                for (int kv = 0; kv < segment.KvHeads; kv++)
                {
                    if (segment[kv] is not IRangeSearchIndex)
                    {
                        throw new ArgumentException($"DIPR range-searches range-search indexes (\"block\"), got \"{indexes.Spec}\"", nameof(indexes));
                    }
                }
            }
        }

        _indexes = indexes;
    }

    /// <inheritdoc />
    public string Name => _indexes is null ? "dipr:scan" : $"dipr:range:{_indexes.Spec}";

    /// <summary>The β on raw q·k a request asks for: its own, or −ln(<see cref="DefaultAlpha"/>)/scale when it sets 0.</summary>
    public static float BetaOf(PlanRequest request, in AttentionGeometry geometry) =>
        request.Beta > 0 ? request.Beta : (float)(-Math.Log(DefaultAlpha) / geometry.Scale);

    /// <inheritdoc />
    public PlanEstimate Estimate(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        long live = layer.Tokens - query.Exclude.CountWithin(layer.Tokens);
        long found = (long)Math.Ceiling(ExpectedShare * live);
        if (_indexes is null)
        {
            // The scan reads every live key once, then attends what it found.
            long rows = Math.Min(live, AttentionSinks.End(layer.Tokens) + found);
            return new PlanEstimate(rows, (live * g.RowBytes) + (rows * 2L * g.RowBytes));
        }

        // A range search reads two summary vectors per 16-key block (the "block" default) twice per head (the probe
        // and the range pass, each once for the whole group), and rescores the tail and what it found.
        long tail = layer.Tokens - _indexes.IndexedTokens;
        long attended = Math.Min(live, AttentionSinks.End(layer.Tokens) + tail + found);
        long summaries = 2 * (_indexes.IndexedTokens / 8);
        return new PlanEstimate(attended, (summaries * g.HeadDim * sizeof(float)) + (attended * 3L * g.RowBytes));
    }

    /// <inheritdoc />
    public HeadSelection Select(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        float beta = BetaOf(query.Plan, g);
        long scanned = 0;
        long scannedBytes = 0;
        if (_indexes is not null)
        {
            CheckBuiltFor(layer);
            long[]? found = RangeSearch(layer, query, kvHead, beta, ref scanned, ref scannedBytes);
            if (found is not null)
            {
                return HeadSelection.Gathered(found, null, scanned, scannedBytes);
            }
        }

        long[] positions = Scan(layer, query, kvHead, beta, ref scanned, ref scannedBytes);
        return HeadSelection.Gathered(positions, null, scanned, scannedBytes);
    }

    /// <summary>
    /// The flat scan: every live key of the head, read a chunk of whole blocks at a time (blocks wholly excluded are
    /// skipped), scored for every group row and fed to the filter.
    /// </summary>
    private static long[] Scan(LayerSnapshot layer, AttentionQuery query, int kvHead, float beta, ref long scanned, ref long scannedBytes)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int groupRows = query.NumQueries * g.GroupSize;
        ExcludeRange exclude = query.Exclude;
        ReadOnlySpan<KvBlockRef> blocks = layer.Blocks;
        int capacity = Math.Max(ScanChunkTokens, g.BlockCapacity);
        float[] keys = ArrayPool<float>.Shared.Rent(Padded(capacity) * d);
        long[] positions = ArrayPool<long>.Shared.Rent(capacity);
        float[] scores = ArrayPool<float>.Shared.Rent(Padded(capacity));
        using var ranges = new RowRanges(groupRows, beta, exclude);
        try
        {
            int b = 0;
            while (b < blocks.Length)
            {
                if (WhollyExcluded(blocks[b], exclude))
                {
                    b++;
                    continue;
                }

                int first = b;
                int rows = 0;
                while (b < blocks.Length && !WhollyExcluded(blocks[b], exclude) && (b == first || rows + blocks[b].Tokens <= capacity))
                {
                    rows += blocks[b].Tokens;
                    b++;
                }

                int read = KvBlockReader.ReadHeadRows(g, blocks[first..b], kvHead, values: false, keys, positions);
                int padded = PadRows(keys, read, d);
                scanned += read;
                scannedBytes += (long)read * g.RowBytes;
                for (int r = 0; r < groupRows; r++)
                {
                    RowDotKernel.Scores(g.GroupRow(query.Queries, kvHead, r), keys.AsSpan(0, padded * d), scores.AsSpan(0, padded));
                    ranges.Add(r, positions.AsSpan(0, read), scores.AsSpan(0, read));
                }
            }

            return ranges.Union(AttentionSinks.End(layer.Tokens), layer.Tokens);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(keys);
            ArrayPool<long>.Shared.Return(positions);
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    /// <summary>
    /// The range search for one head, or null when its superset is more than <see cref="RangeSearchLimit"/> of the live
    /// tokens (the caller scans; what was read so far stays counted). Each segment is searched once for the whole
    /// group (<see cref="IRangeSearchIndex.AtLeastForRows"/>, and <see cref="IGroupSearchIndex"/> for the probe where
    /// the family has it), so the summaries are read once per head, not once per row.
    /// </summary>
    private long[]? RangeSearch(LayerSnapshot layer, AttentionQuery query, int kvHead, float beta, ref long scanned, ref long scannedBytes)
    {
        LayerIndexes indexes = _indexes!;
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int groupRows = query.NumQueries * g.GroupSize;
        ExcludeRange exclude = query.Exclude;
        long live = layer.Tokens - exclude.CountWithin(layer.Tokens);
        long tail = layer.Tokens - indexes.IndexedTokens;
        int limit = (int)Math.Min(int.MaxValue / 4, (long)Math.Ceiling(RangeSearchLimit * live));
        if (tail > limit || groupRows == 0)
        {
            return null;
        }

        float[] queries = ArrayPool<float>.Shared.Rent(groupRows * d);
        float[] thresholds = ArrayPool<float>.Shared.Rent(groupRows);
        long[]? all = null;
        try
        {
            for (int r = 0; r < groupRows; r++)
            {
                g.GroupRow(query.Queries, kvHead, r).CopyTo(queries.AsSpan(r * d, d));
            }

            // 1. A lower bound on each row's best: exact scores of the sinks, the tail and a few candidates per row.
            long[] probe = ProbeSet(layer, query, kvHead, queries.AsSpan(0, groupRows * d), ref scanned, ref scannedBytes);
            using (var probed = new RowRanges(groupRows, 0, exclude))
            {
                ScoreAt(layer, query, kvHead, probe, probed, ref scanned, ref scannedBytes);
                for (int r = 0; r < groupRows; r++)
                {
                    float best = probed.Best(r);
                    if (float.IsNegativeInfinity(best))
                    {
                        return null;
                    }

                    // AtLeast's block bounds and the exact scores round differently; the slack keeps the superset a superset.
                    thresholds[r] = best - beta - (1e-3f * (1 + Math.Abs(best) + beta));
                }
            }

            // 2. The group's superset from every segment (segments cover disjoint positions); give up past the limit.
            all = ArrayPool<long>.Shared.Rent(probe.Length + limit + 1);
            probe.CopyTo(all, 0);
            int count = probe.Length;
            int found = 0;
            foreach (IndexSegment segment in indexes.Segments)
            {
                var index = (IRangeSearchIndex)segment[kvHead];
                int written = index.AtLeastForRows(queries.AsSpan(0, groupRows * d), groupRows, thresholds.AsSpan(0, groupRows), all.AsSpan(count, limit + 1 - found), out int total, out SearchStats stats);
                scanned += stats.VectorsScanned;
                scannedBytes += stats.VectorsScanned * d * sizeof(float);
                if (total > written || found + written > limit)
                {
                    return null;
                }

                found += written;
                count += written;
            }

            // 3. Rescore the union exactly for every row: each row's best is in it (tail, sinks, or ≥ lb − β), so the
            // filter sees the same best and keeps the same positions as a scan.
            long[] union = IndexedPlan.SortedDistinct(all.AsSpan(0, count), layer.Tokens, exclude);
            using var ranges = new RowRanges(groupRows, beta, exclude);
            ScoreAt(layer, query, kvHead, union, ranges, ref scanned, ref scannedBytes);
            return ranges.Union(AttentionSinks.End(layer.Tokens), layer.Tokens);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queries);
            ArrayPool<float>.Shared.Return(thresholds);
            if (all is not null)
            {
                ArrayPool<long>.Shared.Return(all);
            }
        }
    }

    /// <summary>
    /// The sinks, the unindexed tail and every row's <see cref="ProbeBudget"/> best candidates per segment, ascending,
    /// outside the exclude range. <paramref name="queries"/> are the group's rows [rows, HeadDim].
    /// </summary>
    private long[] ProbeSet(LayerSnapshot layer, AttentionQuery query, int kvHead, ReadOnlySpan<float> queries, ref long scanned, ref long scannedBytes)
    {
        LayerIndexes indexes = _indexes!;
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int groupRows = queries.Length / d;
        long sinks = AttentionSinks.End(layer.Tokens);
        long tail = layer.Tokens - indexes.IndexedTokens;
        long capacity = sinks + tail + ((long)groupRows * indexes.Segments.Count * ProbeBudget);
        long[] all = ArrayPool<long>.Shared.Rent((int)Math.Min(int.MaxValue - 64, Math.Max(1, capacity)));
        long[] group = ArrayPool<long>.Shared.Rent(groupRows * ProbeBudget);
        int[] counts = ArrayPool<int>.Shared.Rent(groupRows);
        try
        {
            int n = 0;
            for (long p = 0; p < sinks; p++)
            {
                all[n++] = p;
            }

            for (long p = indexes.IndexedTokens; p < layer.Tokens; p++)
            {
                all[n++] = p;
            }

            var parameters = new SearchParameters(ProbeBudget);
            foreach (IndexSegment segment in indexes.Segments)
            {
                SearchStats stats;
                if (segment[kvHead] is IGroupSearchIndex grouped)
                {
                    grouped.CandidatesForRows(queries, groupRows, parameters, group.AsSpan(0, groupRows * ProbeBudget), counts.AsSpan(0, groupRows), out stats);
                    for (int r = 0; r < groupRows; r++)
                    {
                        group.AsSpan(r * ProbeBudget, counts[r]).CopyTo(all.AsSpan(n));
                        n += counts[r];
                    }
                }
                else
                {
                    stats = default;
                    for (int r = 0; r < groupRows; r++)
                    {
                        n += segment[kvHead].Candidates(queries.Slice(r * d, d), parameters, all.AsSpan(n, ProbeBudget), out SearchStats rowStats);
                        stats = new SearchStats(stats.KeysScored + rowStats.KeysScored, stats.SummariesScored + rowStats.SummariesScored, stats.EntriesTouched + rowStats.EntriesTouched);
                    }
                }

                scanned += stats.VectorsScanned;
                scannedBytes += stats.VectorsScanned * d * sizeof(float);
            }

            return IndexedPlan.SortedDistinct(all.AsSpan(0, n), layer.Tokens, query.Exclude);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(all);
            ArrayPool<long>.Shared.Return(group);
            ArrayPool<int>.Shared.Return(counts);
        }
    }

    /// <summary>Reads the head's keys at <paramref name="positions"/> (ascending) and feeds every row's exact scores to <paramref name="ranges"/>.</summary>
    private static void ScoreAt(LayerSnapshot layer, AttentionQuery query, int kvHead, long[] positions, RowRanges ranges, ref long scanned, ref long scannedBytes)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int n = positions.Length;
        int groupRows = query.NumQueries * g.GroupSize;
        float[] keys = ArrayPool<float>.Shared.Rent(Math.Max(1, Padded(n) * d));
        float[] scores = ArrayPool<float>.Shared.Rent(Math.Max(1, Padded(n)));
        try
        {
            KvBlockReader.ReadHeadRowsAt(g, layer.Blocks, kvHead, values: false, positions, keys.AsSpan(0, n * d));
            int padded = PadRows(keys, n, d);
            scanned += n;
            scannedBytes += (long)n * g.RowBytes;
            for (int r = 0; r < groupRows; r++)
            {
                RowDotKernel.Scores(g.GroupRow(query.Queries, kvHead, r), keys.AsSpan(0, padded * d), scores.AsSpan(0, padded));
                ranges.Add(r, positions, scores.AsSpan(0, n));
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(keys);
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    /// <summary><paramref name="rows"/> rounded up to a multiple of 4.</summary>
    private static int Padded(int rows) => (rows + 3) & ~3;

    /// <summary>
    /// Zeroes the key rows after <paramref name="rows"/> up to a multiple of 4 and returns that count. Scoring a
    /// multiple of 4 rows sends every key down <see cref="RowDotKernel"/>'s four-row path, so a key's f32 score does
    /// not depend on its slot in the buffer: the scan and the range search, which see a key at different slots, then
    /// agree bit for bit at the β boundary.
    /// </summary>
    private static int PadRows(Span<float> keys, int rows, int d)
    {
        int padded = Padded(rows);
        keys.Slice(rows * d, (padded - rows) * d).Clear();
        return padded;
    }

    private static bool WhollyExcluded(in KvBlockRef block, ExcludeRange exclude) =>
        !exclude.IsEmpty && block.Start >= exclude.Start && block.Start + block.Tokens <= exclude.End;

    private void CheckBuiltFor(LayerSnapshot layer)
    {
        LayerIndexes indexes = _indexes!;
        int kvHeads = indexes.Segments.Count == 0 ? layer.Model.NumKvHeads : indexes.Segments[0].KvHeads;
        if (kvHeads != layer.Model.NumKvHeads || indexes.IndexedTokens > layer.Tokens)
        {
            throw KvDbException.Invalid($"the indexes ({kvHeads} KV heads, {indexes.IndexedTokens} tokens) were not built for layer {layer.Layer} ({layer.Model.NumKvHeads} KV heads, {layer.Tokens} tokens)");
        }
    }
}

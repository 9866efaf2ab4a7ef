using System.Buffers;
using System.Numerics.Tensors;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// Hierarchical centroids (Squeezed Attention, ClusterKV, HISA's coarse-then-fine search): keys are
/// clustered by k-means into fine clusters of about <c>C</c> keys, and with two levels the fine clusters are
/// grouped under coarse centroids (coarse k-means first, then fine k-means inside each coarse cluster,
/// which costs n·(√F + C) distance evaluations instead of n·F). A query scores coarse centroids, scores the
/// fine centroids of the best coarse clusters, expands fine clusters best-first until the scan budget of
/// member keys is reached, scores those members exactly and returns the best.
/// Keys far from their coarse centroid (sinks, needles) are kept out of the clusters and scored on every
/// query. Fine clusters are ranked by q·centroid (U=0, the default) or by Quest's upper bound over their
/// members' min/max box (U=1: looser, lower recall on the synthetic workload).
/// Spec: "centroid[:L2][,C=32][,I=4][,P=8][,U=0]" (L levels 1–2, C keys per fine cluster, I Lloyd
/// iterations, P coarse over-probe factor, U bound ranking).
/// </summary>
public sealed class CentroidIndex : IKeyIndex, IIndexPayload, IHeavyHitterIndex
{
    /// <summary>A key is an outlier when its squared distance to its coarse centroid is this many times the cluster's mean.</summary>
    private const float OutlierFactor = 2.5f;

    /// <summary>Cap on outliers so a diffuse head cannot turn the index into a flat scan.</summary>
    private const double MaxOutlierFraction = 0.005;

    private readonly int _levels;
    private readonly int _clusterSize;
    private readonly int _iterations;
    private readonly int _probeFactor;
    private readonly bool _boundRanking;
    private readonly KeyRows _rows;
    private float[] _coarse = [];
    private int[] _fineStart = [0];
    private float[] _fine = [];
    private List<int>[] _members = [];
    private int _largestCluster; // members of the largest fine cluster (an upper bound after outliers leave): sizes heavy-hitter buffers
    private float[] _fineMin = [];  // [fine, dim] per-dimension min of members
    private float[] _fineMax = [];  // [fine, dim] per-dimension max of members
    private float[] _coarseSpread = []; // [coarse] mean squared distance of members to the coarse centroid (key mean with one level)
    private List<int> _outliers = [];
    private ushort[]? _outlierKeys;    // [outliers, dim] bf16 copy, contiguous, for ranking them per query; null after the outliers change
    private int[] _outlierOrder = [];  // 0..outliers-1: the rows of _outlierKeys in order
    private float[] _anchor = [];      // key mean: the outlier anchor with one level  // rows far from every centroid, always scored exactly

    /// <summary>Creates an empty index; see the class summary for the knobs.</summary>
    public CentroidIndex(int dimension, int levels = 2, int clusterSize = 32, int iterations = 4, int probeFactor = 8, bool boundRanking = false)
    {
        _boundRanking = boundRanking;
        if (dimension <= 0 || levels is < 1 or > 2 || clusterSize < 1 || iterations < 0 || probeFactor < 1)
        {
            throw new ArgumentException("centroid index needs dimension > 0, levels 1–2, C ≥ 1, I ≥ 0, P ≥ 1");
        }

        Dimension = dimension;
        _levels = levels;
        _clusterSize = clusterSize;
        _iterations = iterations;
        _probeFactor = probeFactor;
        _rows = new KeyRows(dimension);
    }

    /// <inheritdoc />
    public string Spec => $"centroid:L={_levels},C={_clusterSize},I={_iterations},P={_probeFactor},U={(_boundRanking ? 1 : 0)}";

    /// <inheritdoc />
    public int Dimension { get; }

    /// <inheritdoc />
    public int Count => _rows.Count;

    /// <summary>Coarse clusters (1 with a single level).</summary>
    public int CoarseCount => _fineStart.Length - 1;

    /// <summary>Keys kept out of the clusters because they are far from their centroid (sinks, needles); always scored.</summary>
    public int OutlierCount => _outliers.Count;

    /// <summary>Fine clusters.</summary>
    public int FineCount => _members.Length;

    /// <inheritdoc />
    public long MemoryBytes
    {
        get
        {
            long bytes = _rows.MemoryBytes + (_coarse.Length + _fine.Length) * (long)sizeof(float) + _fineStart.Length * (long)sizeof(int);
            foreach (List<int> m in _members)
            {
                bytes += m.Capacity * (long)sizeof(int);
            }

            return bytes;
        }
    }

    /// <inheritdoc />
    public void Build(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        _rows.Clear();
        _rows.Append(keys, positions);
        Cluster();
    }

    /// <inheritdoc />
    public void Extend(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        if (FineCount == 0)
        {
            Build(keys, positions);
            return;
        }

        // New keys join their nearest existing clusters; centroids stay put (a rebuild re-centres them).
        int first = _rows.Count;
        _rows.Append(keys, positions);
        int d = Dimension;
        Span<int> one = stackalloc int[1];
        // The stored bf16 row, not the f32 one given, is what searches score, so boxes must cover it.
        var row = new float[d];
        for (int i = 0; i < positions.Length; i++)
        {
            ReadOnlySpan<float> k = _rows.Row(first + i, row);
            int coarse = 0;
            if (CoarseCount > 1)
            {
                KMeansAssignKernel.Assign(k, _coarse, d, one);
                coarse = one[0];
            }

            int lo = _fineStart[coarse];
            int hi = _fineStart[coarse + 1];
            KMeansAssignKernel.Assign(k, _fine.AsSpan(lo * d, (hi - lo) * d), d, one);
            int f = lo + one[0];
            float dist = TensorPrimitives.Distance(k, _coarse.Length > 0 ? _coarse.AsSpan(coarse * d, d) : _anchor);
            if (dist * dist > OutlierFactor * _coarseSpread[coarse])
            {
                _outliers.Add(first + i);
                _outlierKeys = null;
                continue;
            }

            _members[f].Add(first + i);
            _largestCluster = Math.Max(_largestCluster, _members[f].Count);
            Widen(f, k);
        }
    }

    /// <inheritdoc />
    public int Candidates(ReadOnlySpan<float> query, in SearchParameters parameters, Span<long> positions, out SearchStats stats)
    {
        if (query.Length != Dimension)
        {
            throw new ArgumentException($"query must have {Dimension} dimensions", nameof(query));
        }

        int budget = Math.Min(parameters.Budget, positions.Length);
        if (Count == 0 || budget <= 0)
        {
            stats = default;
            return 0;
        }

        int scan = Math.Min(Count, parameters.ScanBudget > 0 ? Math.Max(parameters.ScanBudget, budget) : 2 * budget);
        int d = Dimension;
        int coarseCount = CoarseCount;
        int fineCount = FineCount;
        float[] floats = ArrayPool<float>.Shared.Rent(coarseCount + 2 * fineCount + Count + 2 * Dimension);
        int[] ints = ArrayPool<int>.Shared.Rent(coarseCount + 2 * fineCount + Count + budget);
        try
        {
            Span<float> coarseScores = floats.AsSpan(0, coarseCount);
            Span<float> fineScores = floats.AsSpan(coarseCount, fineCount);
            Span<int> coarseOrder = ints.AsSpan(0, coarseCount);
            Span<int> fineIds = ints.AsSpan(coarseCount, fineCount);
            Span<int> fineOrder = ints.AsSpan(coarseCount + fineCount, fineCount);
            long summaries = 0;
            int rankedCoarse = 1;
            coarseOrder[0] = 0;
            if (coarseCount > 1)
            {
                RowDotKernel.Scores(query, _coarse, coarseScores);
                summaries += coarseCount;
                rankedCoarse = TopKSelector.Select(coarseScores, coarseCount, coarseOrder);
            }

            // Probe coarse clusters best-first until they hold P× the scan budget, then rank their fine clusters.
            int probedFine = 0;
            long probedMembers = 0;
            for (int i = 0; i < rankedCoarse && (probedFine == 0 || probedMembers < (long)_probeFactor * scan); i++)
            {
                int c = coarseOrder[i];
                for (int f = _fineStart[c]; f < _fineStart[c + 1]; f++)
                {
                    fineIds[probedFine++] = f;
                    probedMembers += _members[f].Count;
                }
            }

            Span<float> probedScores = fineScores[..probedFine];
            if (_boundRanking)
            {
                // Quest's bound on the cluster's members; it cannot miss an outlier key (a needle) that
                // pulls its cluster's mean only slightly. Min and max count as two summaries each.
                Span<float> lo = floats.AsSpan(coarseCount + fineCount, Dimension);
                Span<float> hi = floats.AsSpan(coarseCount + fineCount + Dimension, Dimension);
                for (int i = 0; i < probedFine; i++)
                {
                    int f = fineIds[i];
                    TensorPrimitives.Multiply(query, _fineMin.AsSpan(f * Dimension, Dimension), lo);
                    TensorPrimitives.Multiply(query, _fineMax.AsSpan(f * Dimension, Dimension), hi);
                    TensorPrimitives.Max(lo, hi, lo);
                    probedScores[i] = TensorPrimitives.Sum(lo);
                }

                summaries += 2L * probedFine;
            }
            else
            {
                RowDotKernel.GatheredScores(query, _fine, fineIds[..probedFine], probedScores);
                summaries += probedFine;
            }
            int rankedFine = TopKSelector.Select(probedScores, probedFine, fineOrder);

            Span<int> rows = ints.AsSpan(coarseCount + 2 * fineCount, Count);
            int taken = 0;
            foreach (int row in _outliers)
            {
                rows[taken++] = row;
            }

            for (int i = 0; i < rankedFine && taken < scan + _outliers.Count; i++)
            {
                foreach (int row in _members[fineIds[fineOrder[i]]])
                {
                    rows[taken++] = row;
                }
            }

            Span<float> memberScores = floats.AsSpan(coarseCount + 2 * fineCount + 2 * Dimension, taken);
            RowDotKernel.GatheredScoresBFloat16(query, _rows.Keys, rows[..taken], memberScores);
            Span<int> best = ints.AsSpan(coarseCount + 2 * fineCount + Count, budget);
            int written = TopKSelector.Select(memberScores, budget, best);
            for (int i = 0; i < written; i++)
            {
                positions[i] = _rows.Positions[rows[best[i]]];
            }

            stats = new SearchStats(taken, summaries, 0);
            return written;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(floats);
            ArrayPool<int>.Shared.Return(ints);
        }
    }

    /// <inheritdoc />
    public int MaxHeavyHitters(int rowCount, int perRow) =>
        (int)Math.Min(int.MaxValue - 64, (long)rowCount * (_outliers.Count + Math.Min(perRow, Count) + _largestCluster));

    /// <summary>
    /// The outliers named per row with their exact score q·k from the index's own copy of the keys (no store read):
    /// a needle the row attends to outranks every cluster, one it ignores can be left to the sample.
    /// </summary>
    private int RankOutliers(ReadOnlySpan<float> rows, int rowCount, Span<long> positions, Span<int> namedFor, Span<float> ranks)
    {
        int n = _outliers.Count;
        if (n == 0)
        {
            return 0;
        }

        ushort[] keys = OutlierKeys();
        float[] scores = ArrayPool<float>.Shared.Rent(n);
        try
        {
            int written = 0;
            for (int r = 0; r < rowCount; r++)
            {
                RowDotKernel.GatheredScoresBFloat16(rows.Slice(r * Dimension, Dimension), keys, _outlierOrder.AsSpan(0, n), scores.AsSpan(0, n));
                for (int i = 0; i < n; i++)
                {
                    namedFor[written] = r;
                    ranks[written] = scores[i];
                    positions[written++] = _rows.Positions[_outliers[i]];
                }
            }

            return written;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    /// <summary>
    /// The outliers' keys (bf16, as the key store holds them) copied into one contiguous matrix, made once per set of
    /// outliers: every query ranks all of them, and contiguous rows stream where scattered ones each miss the cache.
    /// Concurrent searches may both make it (same content).
    /// </summary>
    private ushort[] OutlierKeys()
    {
        int n = _outliers.Count;
        if (_outlierKeys is ushort[] cached && cached.Length == n * Dimension && _outlierOrder.Length == n)
        {
            return cached;
        }

        var keys = new ushort[n * Dimension];
        var order = new int[n];
        ReadOnlySpan<ushort> all = _rows.Keys;
        for (int i = 0; i < n; i++)
        {
            all.Slice(_outliers[i] * Dimension, Dimension).CopyTo(keys.AsSpan(i * Dimension, Dimension));
            order[i] = i;
        }

        _outlierOrder = order;
        _outlierKeys = keys;
        return keys;
    }

    /// <summary>
    /// Centroids ranked at first per row in a heavy-hitter search: the search usually stops within the best few, so a
    /// partial selection (grown on demand) beats ranking every centroid.
    /// </summary>
    private const int FirstRanked = 8;

    /// <summary>
    /// Ranks four times as many of <paramref name="scores"/> into <paramref name="order"/> (whose ranked prefix is unchanged:
    /// the selection breaks ties by index); false when every score is already ranked.
    /// </summary>
    private static bool RankMore(ReadOnlySpan<float> scores, Span<int> order, ref int ranked)
    {
        if (ranked >= scores.Length)
        {
            return false;
        }

        int more = TopKSelector.Select(scores, (int)Math.Min(scores.Length, ranked * 4L), order);
        bool grew = more > ranked;
        ranked = more;
        return grew;
    }

    private int LargestCluster()
    {
        int largest = 0;
        foreach (List<int> m in _members)
        {
            largest = Math.Max(largest, m.Count);
        }

        return largest;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Per row: rank the coarse centroids, probe the best until they hold P× <paramref name="perRow"/> members, rank
    /// their fine centroids and name the members of the best until <paramref name="perRow"/> are named; the outliers
    /// (keys far from every centroid: needles) are named once for the group. No key is read.
    /// </remarks>
    public int HeavyHitters(ReadOnlySpan<float> rows, int rowCount, int perRow, Span<long> positions, out SearchStats stats) =>
        HeavyHitters(rows, rowCount, perRow, positions, [], [], out stats);

    /// <inheritdoc />
    /// <remarks>A member's rank is its fine centroid's score q·c for the row: the order the search names clusters in.</remarks>
    public int HeavyHitters(ReadOnlySpan<float> rows, int rowCount, int perRow, Span<long> positions, Span<int> namedFor, Span<float> ranks, out SearchStats stats)
    {
        bool annotate = !namedFor.IsEmpty;
        int d = Dimension;
        if (rowCount <= 0 || rows.Length != rowCount * d)
        {
            throw new ArgumentException($"rows must be [rowCount, {d}]", nameof(rows));
        }

        int written = annotate ? RankOutliers(rows, rowCount, positions, namedFor, ranks) : 0;
        if (!annotate)
        {
            foreach (int row in _outliers)
            {
                positions[written++] = _rows.Positions[row];
            }
        }

        if (Count == 0 || perRow <= 0)
        {
            stats = default;
            return written;
        }

        int coarseCount = CoarseCount;
        int fineCount = FineCount;
        float[] floats = ArrayPool<float>.Shared.Rent(coarseCount + fineCount);
        int[] ints = ArrayPool<int>.Shared.Rent(coarseCount + (2 * fineCount));
        long summaries = 0;
        try
        {
            Span<float> coarseScores = floats.AsSpan(0, coarseCount);
            Span<int> coarseOrder = ints.AsSpan(0, coarseCount);
            Span<int> fineIds = ints.AsSpan(coarseCount, fineCount);
            Span<int> fineOrder = ints.AsSpan(coarseCount + fineCount, fineCount);
            for (int r = 0; r < rowCount; r++)
            {
                ReadOnlySpan<float> q = rows.Slice(r * d, d);
                int rankedCoarse = 1;
                coarseOrder[0] = 0;
                if (coarseCount > 1)
                {
                    RowDotKernel.Scores(q, _coarse, coarseScores);
                    summaries += coarseCount;
                    rankedCoarse = TopKSelector.Select(coarseScores, Math.Min(coarseCount, FirstRanked), coarseOrder);
                }

                int probedFine = 0;
                long probedMembers = 0;
                for (int i = 0; probedFine == 0 || probedMembers < (long)_probeFactor * perRow; i++)
                {
                    if (i == rankedCoarse && !RankMore(coarseScores, coarseOrder, ref rankedCoarse))
                    {
                        break;
                    }

                    int c = coarseOrder[i];
                    for (int f = _fineStart[c]; f < _fineStart[c + 1]; f++)
                    {
                        fineIds[probedFine++] = f;
                        probedMembers += _members[f].Count;
                    }
                }

                Span<float> fineScores = floats.AsSpan(coarseCount, probedFine);
                RowDotKernel.GatheredScores(q, _fine, fineIds[..probedFine], fineScores);
                summaries += probedFine;
                Span<int> probedOrder = fineOrder[..probedFine];
                int rankedFine = TopKSelector.Select(fineScores, Math.Min(probedFine, FirstRanked), probedOrder);
                int named = 0;
                for (int i = 0; named < perRow; i++)
                {
                    if (i == rankedFine && !RankMore(fineScores, probedOrder, ref rankedFine))
                    {
                        break;
                    }

                    float rank = fineScores[fineOrder[i]];
                    foreach (int member in _members[fineIds[fineOrder[i]]])
                    {
                        if (annotate)
                        {
                            namedFor[written] = r;
                            ranks[written] = rank;
                        }

                        positions[written++] = _rows.Positions[member];
                        named++;
                    }
                }
            }

            stats = new SearchStats(0, summaries, 0);
            return written;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(floats);
            ArrayPool<int>.Shared.Return(ints);
        }
    }

    /// <summary>
    /// The index as flat arrays for the device search (<see cref="CentroidExport"/>): with one level the key mean is the
    /// single coarse centroid; positions below <paramref name="sinks"/> leave the members and outliers (they are attended
    /// anyway).
    /// </summary>
    public CentroidExport Export(long sinks)
    {
        int d = Dimension;
        int coarseCount = CoarseCount;
        float[] coarse = _coarse.Length > 0 ? (float[])_coarse.Clone() : (float[])_anchor.Clone();
        if (coarse.Length != coarseCount * d)
        {
            coarse = new float[coarseCount * d];
        }

        ReadOnlySpan<long> positions = _rows.Positions;
        var coarseMembers = new int[coarseCount];
        var memberStart = new int[FineCount + 1];
        var members = new List<int>(Count);
        for (int c = 0; c < coarseCount; c++)
        {
            int before = members.Count;
            for (int f = _fineStart[c]; f < _fineStart[c + 1]; f++)
            {
                foreach (int row in _members[f])
                {
                    if (positions[row] >= sinks)
                    {
                        members.Add(checked((int)positions[row]));
                    }
                }

                memberStart[f + 1] = members.Count;
            }

            coarseMembers[c] = members.Count - before;
        }

        var outliers = new List<int>(_outliers.Count);
        foreach (int row in _outliers)
        {
            if (positions[row] >= sinks)
            {
                outliers.Add(checked((int)positions[row]));
            }
        }

        return new CentroidExport(d, coarse, coarseMembers, (int[])_fineStart.Clone(), (float[])_fine.Clone(), memberStart, [.. members], [.. outliers]);
    }

    /// <inheritdoc />
    public void Save(Stream stream)
    {
        using BinaryWriter w = IndexFormat.Writer(stream);
        IndexFormat.WriteHeader(w, Spec, Dimension);
        _rows.Save(w);
        IndexFormat.WriteArray<float>(w, _coarse);
        IndexFormat.WriteArray<int>(w, _fineStart);
        IndexFormat.WriteArray<float>(w, _fine);
        IndexFormat.WriteArray<float>(w, _fineMin);
        IndexFormat.WriteArray<float>(w, _fineMax);
        IndexFormat.WriteArray<float>(w, _coarseSpread);
        IndexFormat.WriteArray<float>(w, _anchor);
        IndexFormat.WriteArray<int>(w, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_outliers));
        w.Write(_members.Length);
        foreach (List<int> m in _members)
        {
            IndexFormat.WriteArray<int>(w, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(m));
        }
    }

    /// <summary>Reads the payload written by <see cref="Save"/> after the header.</summary>
    void IIndexPayload.LoadPayload(BinaryReader r)
    {
        _rows.Load(r);
        _coarse = IndexFormat.ReadArray<float>(r);
        _fineStart = IndexFormat.ReadArray<int>(r);
        _fine = IndexFormat.ReadArray<float>(r);
        _fineMin = IndexFormat.ReadArray<float>(r);
        _fineMax = IndexFormat.ReadArray<float>(r);
        _coarseSpread = IndexFormat.ReadArray<float>(r);
        _anchor = IndexFormat.ReadArray<float>(r);
        _outliers = [.. IndexFormat.ReadArray<int>(r)];
        _outlierKeys = null;
        int fine = r.ReadInt32();
        if (fine != _fine.Length / Dimension || _fineMin.Length != _fine.Length || _fineMax.Length != _fine.Length || _fineStart.Length == 0 || _fineStart[^1] != fine)
        {
            throw new InvalidDataException("centroid index stream: cluster tables do not match");
        }

        _members = new List<int>[fine];
        for (int f = 0; f < fine; f++)
        {
            _members[f] = [.. IndexFormat.ReadArray<int>(r)];
        }

        _largestCluster = LargestCluster();
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private void Cluster()
    {
        // Clustering runs over a transient f32 widening of the bf16 copy; only the copy is kept.
        float[] keys = _rows.ToSingle();
        var clusters = HierarchicalClustering.Build(keys, _rows.Count, Dimension, _levels, _clusterSize, _iterations, 0x5EED);
        _coarse = clusters.Coarse;
        _fineStart = clusters.FineStart;
        _fine = clusters.Fine;
        _members = clusters.Members;
        _largestCluster = LargestCluster();
        int d = Dimension;
        SplitOutliers(keys);
        _fineMin = new float[_fine.Length];
        _fineMax = new float[_fine.Length];
        for (int f = 0; f < _members.Length; f++)
        {
            Span<float> min = _fineMin.AsSpan(f * d, d);
            Span<float> max = _fineMax.AsSpan(f * d, d);
            min.Fill(float.PositiveInfinity);
            max.Fill(float.NegativeInfinity);
            foreach (int row in _members[f])
            {
                Widen(f, keys.AsSpan(row * d, d));
            }
        }
    }

    /// <summary>
    /// Moves keys whose squared distance to their coarse centroid (the key mean with one level) exceeds
    /// <see cref="OutlierFactor"/>× that cluster's mean (at most <see cref="MaxOutlierFraction"/> of keys,
    /// farthest first) to the outlier list. A needle or sink sits far off the low-rank bulk of keys, barely
    /// moves the coarse centroid it falls under, and so is never reached by centroid ranking (41 of 238
    /// top-1% needles found at a 1% budget before this); scoring a handful of outliers exactly on every
    /// query costs a fraction of a percent. Coarse rather than fine distances, because k-means++ likes to
    /// give an outlier a fine cluster of its own, where it is at distance 0.
    /// </summary>
    private void SplitOutliers(float[] keys)
    {
        int d = Dimension;
        int coarseCount = CoarseCount;
        _coarseSpread = new float[coarseCount];
        _anchor = _coarse.Length > 0 ? [] : KeyMean(keys);
        float[] anchors = _coarse.Length > 0 ? _coarse : _anchor;
        var far = new List<(float Excess, int Row, int Fine)>();
        for (int c = 0; c < coarseCount; c++)
        {
            ReadOnlySpan<float> anchor = anchors.AsSpan(c * d, d);
            double sum = 0;
            int count = 0;
            for (int f = _fineStart[c]; f < _fineStart[c + 1]; f++)
            {
                foreach (int row in _members[f])
                {
                    float dist = TensorPrimitives.Distance(keys.AsSpan(row * d, d), anchor);
                    sum += dist * dist;
                    count++;
                }
            }

            _coarseSpread[c] = (float)(sum / Math.Max(1, count));
            for (int f = _fineStart[c]; f < _fineStart[c + 1]; f++)
            {
                foreach (int row in _members[f])
                {
                    float dist = TensorPrimitives.Distance(keys.AsSpan(row * d, d), anchor);
                    if (dist * dist > OutlierFactor * _coarseSpread[c])
                    {
                        far.Add((dist * dist / _coarseSpread[c], row, f));
                    }
                }
            }
        }

        far.Sort((a, b) => b.Excess.CompareTo(a.Excess));
        int keep = Math.Min(far.Count, (int)(MaxOutlierFraction * Count));
        _outliers = [];
        _outlierKeys = null;
        for (int i = 0; i < keep; i++)
        {
            _outliers.Add(far[i].Row);
            _members[far[i].Fine].Remove(far[i].Row);
        }
    }

    private float[] KeyMean(float[] keys)
    {
        int d = Dimension;
        var mean = new float[d];
        for (int i = 0; i < Count; i++)
        {
            TensorPrimitives.Add(mean, keys.AsSpan(i * d, d), mean);
        }

        TensorPrimitives.Multiply(mean, 1f / Math.Max(1, Count), mean);
        return mean;
    }

    /// <summary>Grows fine cluster <paramref name="f"/>'s min/max box to cover <paramref name="key"/>.</summary>
    private void Widen(int f, ReadOnlySpan<float> key)
    {
        int d = Dimension;
        Span<float> min = _fineMin.AsSpan(f * d, d);
        Span<float> max = _fineMax.AsSpan(f * d, d);
        TensorPrimitives.Min(min, key, min);
        TensorPrimitives.Max(max, key, max);
    }
}

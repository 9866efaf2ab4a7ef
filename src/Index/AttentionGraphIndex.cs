using System.Buffers;
using System.Numerics.Tensors;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// Attention-aware ANN graph (RetrievalAttention, RoarGraph). Decode queries and keys are distributed
/// differently, so a graph whose edges only join similar keys makes a query wander (Faiss HNSW on the
/// synthetic workload: recall@1% 0.94 after scanning 23% of keys). Here edges follow the queries: each
/// sample query's exact top-Q keys are found, and every key links to the keys it most specifically
/// shares such top lists with (a query-guided projection of the query–key bipartite graph), so from any
/// top key of a query its other top keys are one hop away; reverse edges make hubs reachable back.
/// Optional key-to-key nearest neighbours (N, within k-means clusters) connect keys no sample query
/// reached. Search is best-first from entry points — the keys most often in sample top lists (sinks,
/// needles, hubs), the first positions, the largest-norm keys and optionally the seeds of the nearest
/// sample-query clusters (C). The search spends its scan budget: it always expands the best unexpanded
/// key, and when the part of the graph reachable so far runs out it restarts from the next most
/// frequently hit keys (keys in nearly every top list link mostly to each other and can form a closed
/// component: on the current synthetic workload one head's entry points reached only 37 keys, recall
/// 0.20). Only an explicit Effort stops it earlier, as a beam width (like HNSW's efSearch).
/// Defaults were tuned on the synthetic workload (32K tokens, k = 1%): key-neighbour edges and query
/// clusters cost scans without adding recall there (N=2 → N=0 took recall at 3% scanned from 0.874 to
/// 0.897; Q=256 → 384 to 0.911). Spec: "graph[:R=24,Q=384,N=0,E=8,C=0]" (R max degree, Q sample top
/// list, N key-neighbour edges, E hub entry points, C sample-query clusters seeding the search).
/// </summary>
public sealed class AttentionGraphIndex : IQueryGuidedIndex, IIndexPayload
{
    /// <summary>Query clusters probed per search and seeds kept per cluster.</summary>
    private const int ClusterProbes = 2;
    private const int ClusterSeeds = 8;

    /// <summary>Keys sampled as stand-in queries when no sample query was given (plain key graph).</summary>
    private const int FallbackSamples = 1024;

    /// <summary>Keys scored per restart when the reachable frontier runs dry before the scan budget.</summary>
    private const int RestartBatch = 16;

    private readonly int _degree;
    private readonly int _queryTop;
    private readonly int _keyNeighbors;
    private readonly int _entryCount;
    private readonly int _queryClusters;
    private readonly KeyRows _rows;
    private readonly List<float> _samples = [];
    private int[] _adjacency = [];
    private int[] _entries = [];
    private int[] _restarts = [];          // keys by sample top-list hits, descending: restart seeds
    private float[] _sampleThresholds = []; // [m] score of each sample query's Q-th best key at build
    private int[] _samplePivots = [];       // [m] each sample query's best key at build
    private float[] _queryCentroids = [];  // [clusters, dim] k-means of the sample queries
    private int[] _clusterEntries = [];    // [clusters, ClusterSeeds] exact top keys of each centroid

    /// <summary>Creates an empty graph; see the class summary for the knobs.</summary>
    public AttentionGraphIndex(int dimension, int degree = 24, int queryTop = 384, int keyNeighbors = 0, int entryPoints = 8, int queryClusters = 0)
    {
        _queryClusters = Math.Max(0, queryClusters);
        if (dimension <= 0 || degree < 2 || queryTop < 2 || keyNeighbors < 0 || keyNeighbors >= degree || entryPoints < 1)
        {
            throw new ArgumentException("graph needs dimension > 0, R ≥ 2, Q ≥ 2, 0 ≤ N < R and E ≥ 1");
        }

        Dimension = dimension;
        _degree = degree;
        _queryTop = queryTop;
        _keyNeighbors = keyNeighbors;
        _entryCount = entryPoints;
        _rows = new KeyRows(dimension);
    }

    /// <inheritdoc />
    public string Spec => $"graph:R={_degree},Q={_queryTop},N={_keyNeighbors},E={_entryCount},C={_queryClusters}";

    /// <inheritdoc />
    public int Dimension { get; }

    /// <inheritdoc />
    public int Count => _rows.Count;

    /// <summary>Sample queries held for the next build.</summary>
    public int SampleCount => _samples.Count / Dimension;

    /// <summary>Entry-point rows of the search.</summary>
    public ReadOnlySpan<int> EntryPoints => _entries;

    /// <inheritdoc />
    public long MemoryBytes => _rows.MemoryBytes + (_adjacency.Length + _entries.Length + _restarts.Length + _clusterEntries.Length) * (long)sizeof(int) + (_samples.Capacity + _queryCentroids.Length) * (long)sizeof(float);

    /// <inheritdoc />
    public void AddSampleQueries(ReadOnlySpan<float> queries)
    {
        if (queries.Length % Dimension != 0)
        {
            throw new ArgumentException($"sample queries must be [m, {Dimension}] floats", nameof(queries));
        }

        foreach (float v in queries)
        {
            _samples.Add(v);
        }
    }

    /// <inheritdoc />
    public void Build(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        _rows.Clear();
        _rows.Append(keys, positions);
        int n = _rows.Count;
        _adjacency = new int[n * _degree];
        Array.Fill(_adjacency, -1);
        if (n == 0)
        {
            _entries = [];
            _restarts = [];
            return;
        }

        // Construction scores over a transient f32 widening of the bf16 copy (the rows searches score);
        // only the copy is kept.
        float[] widened = _rows.ToSingle();
        int[] hits = AddQueryGuidedEdges(widened);
        AddKeyNeighborEdges(widened);
        AddReverseEdges();
        ChooseEntries(hits, widened);
        ClusterSampleQueries(widened);
    }

    /// <inheritdoc />
    public void Extend(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        if (Count == 0)
        {
            Build(keys, positions);
            return;
        }

        // New keys join like NSW inserts: a search with the key as query finds its best-scoring
        // neighbours, linked both ways; sinks and large-norm newcomers also become entry points.
        int first = Count;
        _rows.Append(keys, positions);
        Array.Resize(ref _adjacency, Count * _degree);
        Array.Fill(_adjacency, -1, first * _degree, (Count - first) * _degree);
        var entries = new List<int>(_entries);
        var key = new float[Dimension];
        LinkToSampleQueries(first, entries, key);
        int links = Math.Max(1, _degree / 2);
        var found = new long[links];
        for (int row = first; row < Count; row++)
        {
            int got = Search(_rows.Row(row, key), links, 8 * _degree, 2 * links, true, found, out _, row);
            for (int i = 0; i < got; i++)
            {
                int other = (int)found[i];
                TryLink(row, other);
                TryLink(other, row);
            }

            if (_rows.Positions[row] < AttentionSinks.Count)
            {
                entries.Add(row);
            }
        }

        _entries = [.. entries];
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

        int scan = parameters.ScanBudget > 0 ? Math.Max(parameters.ScanBudget, budget) : 3 * budget;
        // An explicit Effort is a beam width that may stop the search early (HNSW's efSearch); without
        // one the search spends its scan budget, expanding the best unexpanded keys and restarting
        // from frequently hit keys when the reachable part of the graph runs out.
        int beam = parameters.Effort > 0 ? Math.Max(parameters.Effort, budget) : budget;
        int written = Search(query, budget, scan, beam, parameters.Effort > 0, positions, out long scanned, -1);
        for (int i = 0; i < written; i++)
        {
            positions[i] = _rows.Positions[(int)positions[i]];
        }

        stats = new SearchStats(scanned, 0, 0);
        return written;
    }

    /// <inheritdoc />
    public void Save(Stream stream)
    {
        using BinaryWriter w = IndexFormat.Writer(stream);
        IndexFormat.WriteHeader(w, Spec, Dimension);
        _rows.Save(w);
        IndexFormat.WriteArray<int>(w, _adjacency);
        IndexFormat.WriteArray<int>(w, _entries);
        IndexFormat.WriteArray<float>(w, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_samples));
        IndexFormat.WriteArray<float>(w, _sampleThresholds);
        IndexFormat.WriteArray<int>(w, _samplePivots);
        IndexFormat.WriteArray<float>(w, _queryCentroids);
        IndexFormat.WriteArray<int>(w, _clusterEntries);
        IndexFormat.WriteArray<int>(w, _restarts);
    }

    /// <summary>Reads the payload written by <see cref="Save"/> after the header.</summary>
    void IIndexPayload.LoadPayload(BinaryReader r)
    {
        _rows.Load(r);
        _adjacency = IndexFormat.ReadArray<int>(r);
        _entries = IndexFormat.ReadArray<int>(r);
        _samples.Clear();
        _samples.AddRange(IndexFormat.ReadArray<float>(r));
        _sampleThresholds = IndexFormat.ReadArray<float>(r);
        _samplePivots = IndexFormat.ReadArray<int>(r);
        _queryCentroids = IndexFormat.ReadArray<float>(r);
        _clusterEntries = IndexFormat.ReadArray<int>(r);
        _restarts = IndexFormat.ReadArray<int>(r);
        if (_adjacency.Length != Count * _degree || _clusterEntries.Length != _queryCentroids.Length / Dimension * ClusterSeeds)
        {
            throw new InvalidDataException("graph index stream: adjacency does not match the key count");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    /// <summary>
    /// Best-first search; writes up to <paramref name="budget"/> row ids (best first) into
    /// <paramref name="found"/>. <paramref name="skipRow"/> is never visited (an inserting key).
    /// </summary>
    private int Search(ReadOnlySpan<float> query, int budget, int scan, int beam, bool stopAtBeam, Span<long> found, out long scanned, int skipRow)
    {
        int n = Count;
        int capacity = scan + _degree + _entries.Length;
        int clusterCount = _queryCentroids.Length / Dimension;
        ulong[] visited = ArrayPool<ulong>.Shared.Rent((n + 63) >> 6);
        int[] ints = ArrayPool<int>.Shared.Rent(3 * capacity + budget + clusterCount);
        float[] floats = ArrayPool<float>.Shared.Rent(3 * capacity + clusterCount);
        try
        {
            Array.Clear(visited, 0, (n + 63) >> 6);
            Span<int> seen = ints.AsSpan(0, capacity);
            Span<float> seenScores = floats.AsSpan(0, capacity);
            var frontier = new Heap(ints.AsSpan(capacity, capacity), floats.AsSpan(capacity, capacity), max: true);
            var results = new Heap(ints.AsSpan(2 * capacity, capacity), floats.AsSpan(2 * capacity, capacity), max: false);
            int count = 0;
            if (skipRow >= 0)
            {
                visited[skipRow >> 6] |= 1UL << skipRow;
            }

            // Entry points are scored first; they count as scanned keys. The seeds of the sample-query
            // clusters nearest this query come first: they are likely in its top list already.
            long summaries = 0;
            int clusters = _queryCentroids.Length / Dimension;
            if (clusters > 0)
            {
                Span<float> centroidScores = floats.AsSpan(3 * capacity, clusters);
                Span<int> order = ints.AsSpan(3 * capacity + budget, clusters);
                RowDotKernel.Scores(query, _queryCentroids, centroidScores);
                summaries = clusters;
                int probes = TopKSelector.Select(centroidScores, ClusterProbes, order);
                for (int p = 0; p < probes; p++)
                {
                    foreach (int e in _clusterEntries.AsSpan(order[p] * ClusterSeeds, ClusterSeeds))
                    {
                        Visit(e, visited, seen, ref count, scan);
                    }
                }
            }

            foreach (int e in _entries)
            {
                Visit(e, visited, seen, ref count, scan);
            }

            RowDotKernel.GatheredScoresBFloat16(query, _rows.Keys, seen[..count], seenScores[..count]);
            for (int i = 0; i < count; i++)
            {
                frontier.Push(seen[i], seenScores[i]);
                Offer(ref results, beam, seen[i], seenScores[i]);
            }

            int restart = 0;
            while (count < scan)
            {
                if (frontier.Count == 0)
                {
                    // The component reached so far is exhausted while scan budget remains: restart from
                    // the next most frequently hit keys not yet seen.
                    int batchStart = count;
                    while (restart < _restarts.Length && count - batchStart < RestartBatch && count < scan)
                    {
                        Visit(_restarts[restart++], visited, seen, ref count, scan);
                    }

                    if (count == batchStart)
                    {
                        break;
                    }

                    RowDotKernel.GatheredScoresBFloat16(query, _rows.Keys, seen[batchStart..count], seenScores[batchStart..count]);
                    for (int i = batchStart; i < count; i++)
                    {
                        frontier.Push(seen[i], seenScores[i]);
                        Offer(ref results, beam, seen[i], seenScores[i]);
                    }

                    continue;
                }

                // Best unexpanded candidate first; the beam only orders the work, the scan budget ends it.
                frontier.Pop(out int node, out float score);
                if (stopAtBeam && results.Count >= beam && score < results.TopScore)
                {
                    break;
                }

                int batch = count;
                ReadOnlySpan<int> neighbors = _adjacency.AsSpan(node * _degree, _degree);
                foreach (int y in neighbors)
                {
                    if (y < 0 || count >= scan)
                    {
                        break;
                    }

                    if ((visited[y >> 6] & (1UL << y)) == 0)
                    {
                        visited[y >> 6] |= 1UL << y;
                        seen[count++] = y;
                    }
                }

                RowDotKernel.GatheredScoresBFloat16(query, _rows.Keys, seen[batch..count], seenScores[batch..count]);
                for (int i = batch; i < count; i++)
                {
                    frontier.Push(seen[i], seenScores[i]);
                    Offer(ref results, beam, seen[i], seenScores[i]);
                }
            }

            Span<int> best = ints.AsSpan(3 * capacity, budget);
            int written = TopKSelector.Select(seenScores[..count], budget, best);
            for (int i = 0; i < written; i++)
            {
                found[i] = seen[best[i]];
            }

            scanned = count + summaries;
            return written;
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(visited);
            ArrayPool<int>.Shared.Return(ints);
            ArrayPool<float>.Shared.Return(floats);
        }
    }

    private static void Visit(int row, ulong[] visited, Span<int> seen, ref int count, int scan)
    {
        if (count < scan && (visited[row >> 6] & (1UL << row)) == 0)
        {
            visited[row >> 6] |= 1UL << row;
            seen[count++] = row;
        }
    }

    private static void Offer(ref Heap results, int beam, int row, float score)
    {
        if (results.Count < beam)
        {
            results.Push(row, score);
        }
        else if (score > results.TopScore)
        {
            results.ReplaceTop(row, score);
        }
    }

    /// <summary>
    /// Finds each sample query's exact top-Q keys and links every key to the keys it most often shares a
    /// top list with; returns per key how many sample top lists it is in.
    /// </summary>
    private int[] AddQueryGuidedEdges(float[] keys)
    {
        int n = Count;
        int d = Dimension;
        float[] samples = [.. _samples];
        int m = samples.Length / d;
        if (m == 0)
        {
            // No query distribution given: stand in keys spread over the context (a plain key graph).
            m = Math.Min(n, FallbackSamples);
            samples = new float[m * d];
            for (int s = 0; s < m; s++)
            {
                keys.AsSpan((int)((long)s * n / m) * d, d).CopyTo(samples.AsSpan(s * d, d));
            }
        }

        int top = Math.Min(_queryTop, n);
        var tops = new int[m * top];
        var hits = new int[n];
        var scores = new float[n];
        bool real = _samples.Count > 0;
        _sampleThresholds = real ? new float[m] : [];
        _samplePivots = real ? new int[m] : [];
        for (int s = 0; s < m; s++)
        {
            RowDotKernel.Scores(samples.AsSpan(s * d, d), keys, scores);
            Span<int> list = tops.AsSpan(s * top, top);
            TopKSelector.Select(scores, top, list);
            if (real)
            {
                _samplePivots[s] = list[0];
                _sampleThresholds[s] = scores[list[top - 1]];
            }

            foreach (int k in list)
            {
                hits[k]++;
            }
        }

        // Inverted lists: the sample queries whose top list holds each key (CSR).
        var start = new int[n + 1];
        for (int i = 0; i < n; i++)
        {
            start[i + 1] = start[i] + hits[i];
        }

        var fill = (int[])start.Clone();
        var queriesOf = new int[start[n]];
        for (int s = 0; s < m; s++)
        {
            foreach (int k in tops.AsSpan(s * top, top))
            {
                queriesOf[fill[k]++] = s;
            }
        }

        int guided = _degree - _keyNeighbors;
        var together = new int[n];
        var touched = new int[n];
        var weights = new float[n];
        var best = new int[guided];
        for (int x = 0; x < n; x++)
        {
            if (hits[x] == 0)
            {
                continue;
            }

            int distinct = 0;
            for (int i = start[x]; i < start[x + 1]; i++)
            {
                ReadOnlySpan<int> list = tops.AsSpan(queriesOf[i] * top, top);
                for (int rank = 0; rank < list.Length; rank++)
                {
                    int y = list[rank];
                    if (y != x && together[y]++ == 0)
                    {
                        touched[distinct++] = y;
                    }
                }
            }

            for (int i = 0; i < distinct; i++)
            {
                int y = touched[i];
                weights[i] = Weight(together[y], hits[y]);
            }

            int chosen = TopKSelector.Select(weights.AsSpan(0, distinct), guided, best);
            for (int i = 0; i < chosen; i++)
            {
                TryLink(x, touched[best[i]]);
            }

            for (int i = 0; i < distinct; i++)
            {
                together[touched[i]] = 0;
            }
        }

        return hits;
    }

    /// <summary>
    /// Edge weight of x → y: top lists shared, over √(top lists y is in). Raw counts would give every key
    /// the same few hubs (keys in most top lists, already entry points); the normalization prefers keys
    /// specifically co-top with x, which is what lets one expansion reach new top keys (recall@1% at 3%
    /// scanned went from 0.55 to 0.74 on the synthetic workload).
    /// </summary>
    private static float Weight(int together, int hits) => together / MathF.Sqrt(hits);

    /// <summary>Links each key to its nearest keys (L2) inside its fine k-means cluster, so every key has out-edges.</summary>
    private void AddKeyNeighborEdges(float[] keys)
    {
        if (_keyNeighbors == 0)
        {
            return;
        }

        int d = Dimension;
        var clusters = HierarchicalClustering.Build(keys, Count, d, 2, 64, 3, 0x6EA9);
        var norms = new float[Count];
        for (int i = 0; i < Count; i++)
        {
            ReadOnlySpan<float> k = keys.AsSpan(i * d, d);
            norms[i] = TensorPrimitives.Dot(k, k);
        }

        var best = new int[_keyNeighbors + 1];
        foreach (List<int> members in clusters.Members)
        {
            int size = members.Count;
            if (size < 2)
            {
                continue;
            }

            int[] ids = [.. members];
            var dots = new float[size];
            for (int a = 0; a < size; a++)
            {
                RowDotKernel.GatheredScores(keys.AsSpan(ids[a] * d, d), keys, ids, dots);
                for (int b = 0; b < size; b++)
                {
                    // Larger is nearer: −‖x − y‖² + ‖x‖² = 2x·y − ‖y‖²; the key itself is excluded.
                    dots[b] = b == a ? float.NegativeInfinity : 2 * dots[b] - norms[ids[b]];
                }

                int got = TopKSelector.Select(dots, _keyNeighbors, best);
                for (int i = 0; i < got; i++)
                {
                    TryLink(ids[a], ids[best[i]]);
                }
            }
        }
    }

    /// <summary>Adds y → x for every x → y where y still has room, so query-guided hubs are reachable back.</summary>
    private void AddReverseEdges()
    {
        int n = Count;
        int[] snapshot = (int[])_adjacency.Clone();
        for (int x = 0; x < n; x++)
        {
            foreach (int y in snapshot.AsSpan(x * _degree, _degree))
            {
                if (y < 0)
                {
                    break;
                }

                TryLink(y, x);
            }
        }
    }

    private void ChooseEntries(int[] hits, float[] keys)
    {
        int n = Count;
        var entries = new List<int>();
        var order = new int[Math.Min(n, _entryCount)];
        var weights = new float[n];
        for (int i = 0; i < n; i++)
        {
            weights[i] = hits[i] == 0 ? float.NegativeInfinity : hits[i];
        }

        int got = TopKSelector.Select(weights, _entryCount, order);
        for (int i = 0; i < got; i++)
        {
            if (hits[order[i]] > 0)
            {
                entries.Add(order[i]);
            }
        }

        for (int i = 0; i < n; i++)
        {
            weights[i] = TensorPrimitives.Norm(keys.AsSpan(i * Dimension, Dimension));
            if (_rows.Positions[i] < AttentionSinks.Count && !entries.Contains(i))
            {
                entries.Add(i);
            }
        }

        got = TopKSelector.Select(weights, Math.Min(4, n), order);
        for (int i = 0; i < got; i++)
        {
            if (!entries.Contains(order[i]))
            {
                entries.Add(order[i]);
            }
        }

        _entries = [.. entries];

        // Restart seeds: the keys of most sample top lists after the entry points, most hit first.
        int hit = 0;
        for (int i = 0; i < n; i++)
        {
            weights[i] = hits[i] == 0 || entries.Contains(i) ? float.NegativeInfinity : hits[i];
            hit += hits[i] > 0 ? 1 : 0;
        }

        var restarts = new int[Math.Min(hit, Math.Max(RestartBatch, n / 4))];
        got = TopKSelector.Select(weights, restarts.Length, restarts);
        _restarts = restarts.AsSpan(0, got).ToArray().Where(i => hits[i] > 0 && !entries.Contains(i)).ToArray();
    }

    /// <summary>Clusters the sample queries and keeps each centroid's exact top keys as search seeds.</summary>
    private void ClusterSampleQueries(float[] keys)
    {
        int d = Dimension;
        int m = _samples.Count / d;
        int clusters = Math.Min(_queryClusters, m / 8);
        if (clusters < 2)
        {
            _queryCentroids = [];
            _clusterEntries = [];
            return;
        }

        var assignment = new int[m];
        _queryCentroids = KMeans.Train(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_samples), d, clusters, 4, 0x0C1A, assignment);
        clusters = _queryCentroids.Length / d;
        int seeds = Math.Min(ClusterSeeds, Count);
        _clusterEntries = new int[clusters * ClusterSeeds];
        var scores = new float[Count];
        for (int c = 0; c < clusters; c++)
        {
            RowDotKernel.Scores(_queryCentroids.AsSpan(c * d, d), keys, scores);
            Span<int> list = _clusterEntries.AsSpan(c * ClusterSeeds, ClusterSeeds);
            int got = TopKSelector.Select(scores, seeds, list);
            list[got..].Fill(list[0]);
        }
    }

    /// <summary>
    /// Query guidance for appended keys: a new key that would have entered a sample query's top-Q at build
    /// is linked both ways with that query's best key (evicting the pivot's weakest link when full), and a
    /// key in the top lists of half the sample queries or more (a new needle or sink) becomes an entry point.
    /// </summary>
    private void LinkToSampleQueries(int first, List<int> entries, float[] key)
    {
        int m = _sampleThresholds.Length;
        if (m == 0)
        {
            return;
        }

        int d = Dimension;
        ReadOnlySpan<float> samples = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_samples)[..(m * d)];
        var scores = new float[m];
        for (int row = first; row < Count; row++)
        {
            RowDotKernel.Scores(_rows.Row(row, key), samples, scores);
            int hits = 0;
            for (int s = 0; s < m; s++)
            {
                if (scores[s] >= _sampleThresholds[s])
                {
                    hits++;
                    TryLink(row, _samplePivots[s]);
                    ForceLink(_samplePivots[s], row);
                }
            }

            if (2 * hits >= m)
            {
                entries.Add(row);
            }
        }
    }

    /// <summary>Adds x → y, replacing x's last (weakest) edge when its list is full.</summary>
    private void ForceLink(int x, int y)
    {
        Span<int> list = _adjacency.AsSpan(x * _degree, _degree);
        if (list.Contains(y))
        {
            return;
        }

        int free = list.IndexOf(-1);
        list[free >= 0 ? free : _degree - 1] = y;
    }

    /// <summary>Adds x → y unless present or x is full.</summary>
    private void TryLink(int x, int y)
    {
        if (x == y)
        {
            return;
        }

        Span<int> list = _adjacency.AsSpan(x * _degree, _degree);
        for (int i = 0; i < list.Length; i++)
        {
            if (list[i] == y)
            {
                return;
            }

            if (list[i] < 0)
            {
                list[i] = y;
                return;
            }
        }
    }

    /// <summary>A binary heap of (row, score) over caller-provided storage; max-heap or min-heap.</summary>
    private ref struct Heap
    {
        private readonly Span<int> _rows;
        private readonly Span<float> _scores;
        private readonly bool _max;

        public Heap(Span<int> rows, Span<float> scores, bool max)
        {
            _rows = rows;
            _scores = scores;
            _max = max;
            Count = 0;
        }

        public int Count { get; private set; }

        public readonly float TopScore => _scores[0];

        public void Push(int row, float score)
        {
            int i = Count++;
            _rows[i] = row;
            _scores[i] = score;
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (!Before(i, parent))
                {
                    break;
                }

                Swap(i, parent);
                i = parent;
            }
        }

        public void Pop(out int row, out float score)
        {
            row = _rows[0];
            score = _scores[0];
            Count--;
            if (Count > 0)
            {
                _rows[0] = _rows[Count];
                _scores[0] = _scores[Count];
                SiftDown();
            }
        }

        public void ReplaceTop(int row, float score)
        {
            _rows[0] = row;
            _scores[0] = score;
            SiftDown();
        }

        private readonly bool Before(int a, int b) => _max ? _scores[a] > _scores[b] : _scores[a] < _scores[b];

        private readonly void Swap(int a, int b)
        {
            (_rows[a], _rows[b]) = (_rows[b], _rows[a]);
            (_scores[a], _scores[b]) = (_scores[b], _scores[a]);
        }

        private readonly void SiftDown()
        {
            int i = 0;
            while (true)
            {
                int left = 2 * i + 1;
                if (left >= Count)
                {
                    return;
                }

                int pick = left;
                if (left + 1 < Count && Before(left + 1, left))
                {
                    pick = left + 1;
                }

                if (!Before(pick, i))
                {
                    return;
                }

                Swap(pick, i);
                i = pick;
            }
        }
    }
}

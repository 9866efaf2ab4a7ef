using System.Collections.Concurrent;
using KvDb.Store;
using KvDb.Store.Events;

namespace KvDb.Index.Catalog;

/// <summary>
/// The indexes the sparse plans search, per (context, layer, family spec), kept current in the background:
/// answers never wait (until a context's indexes exist the planner answers exactly; rows not yet indexed are
/// the plan's tail, scanned exactly). A context's view is a shared base segment plus its own suffix:
/// <list type="bullet">
/// <item>The <b>base</b> covers the full blocks [0, G·k) (G = <see cref="SegmentTokens"/>, rounded to blocks) and is
/// keyed by content, <see cref="IndexContentKey"/> of its last block (+ layer + spec), not by context: every
/// context whose blocks start the same way (a fork, a shared prefix, the same prompt appended again) uses
/// the same segment, and with a data directory it is saved to disk and loaded after a restart.
/// A context takes the longest base found at one of its grid points (memory, then disk).</item>
/// <item>The <b>suffix</b> covers the context's own full blocks after the base; it grows with
/// <see cref="IKeyIndex.Extend"/> on a copy (queries keep the old one meanwhile) once ≥ <see cref="ExtendStep"/>
/// rows are unindexed. When it reaches max(G, base) tokens the context moves to a longer base (rebase:
/// one full build, so the work stays linear in the context length).</item>
/// <item>Query-guided families (graph, lsh Q=1) build with the samples of the context that asks first; a
/// shared base keeps its samples; a suffix is rebuilt instead of extended when the layer's sample queries
/// have doubled since it was built.</item>
/// </list>
/// Grid-aligned bases are what makes sharing work across forks and repeated prompts: two contexts share the
/// base of every grid point their blocks have in common, whatever their lengths when indexed.
/// </summary>
public sealed class LayerIndexCatalog : IDisposable
{
    /// <summary>Default grid of base segment ends, in tokens.</summary>
    public const int DefaultSegmentTokens = 4096;

    /// <summary>An index update (build or extension of a layer's segments) started: the index family ("centroid", "lsh", …).</summary>
    public event Action<string>? UpdateStarted;

    /// <summary>An update ended: family, seconds, and whether it failed (a deleted context's update counts as not failed).</summary>
    public event Action<string, double, bool>? UpdateFinished;

    private const int MaxEntries = 512;
    private const int MaxShared = 512;
    private readonly IKvStore _store;
    private readonly IndexSegmentFiles? _files;
    private readonly ConcurrentDictionary<(string Context, int Layer, string Spec), Entry> _entries = new();
    private readonly SampleQueryLog _samples = new(4 * MaxEntries);
    private readonly ConcurrentDictionary<(UInt128 Key, int Layer, string Spec), SharedSegment> _shared = new();
    private readonly ConcurrentQueue<IndexFileProblem> _problems = new();
    private readonly ConcurrentDictionary<string, IndexFileProblem> _movedAside = new(StringComparer.Ordinal);
    private readonly List<Task> _background = []; // background updates and collections, for Dispose
    private long _clock;
    private long _builds;
    private long _builtTokens;
    private long _extends;
    private long _extendedTokens;
    private long _loads;
    private long _sharedReuses;
    private long _corruptFiles;
    private long _savedFiles;
    private long _collectedFiles;
    private bool _disposed;

    /// <summary>
    /// Creates a catalog over <paramref name="store"/>. With <paramref name="directory"/> (e.g. DIR/indexes of a
    /// persistent store) base segments are saved there and loaded lazily; files whose blocks no context holds
    /// any more are deleted in the background now and whenever a context turns out to be gone.
    /// </summary>
    public LayerIndexCatalog(IKvStore store, string? directory = null, int segmentTokens = DefaultSegmentTokens)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentTokens, 1);
        _store = store;
        SegmentTokens = segmentTokens;
        if (directory is not null)
        {
            _files = new IndexSegmentFiles(directory);
            StartGarbageCollection();
        }
    }

    /// <summary>Grid of base segment ends in tokens (rounded up to whole blocks).</summary>
    public int SegmentTokens { get; }

    /// <summary>What the catalog did so far (for tests, benchmarks and operators).</summary>
    public IndexCatalogCounters Counters => new(
        Interlocked.Read(ref _builds),
        Interlocked.Read(ref _builtTokens),
        Interlocked.Read(ref _extends),
        Interlocked.Read(ref _extendedTokens),
        Interlocked.Read(ref _loads),
        Interlocked.Read(ref _sharedReuses),
        Interlocked.Read(ref _corruptFiles),
        Interlocked.Read(ref _savedFiles),
        Interlocked.Read(ref _collectedFiles));

    /// <summary>Problems met with index files (unreadable, moved aside, not saved), oldest first.</summary>
    public IReadOnlyCollection<IndexFileProblem> Problems => [.. _problems];

    /// <summary>Sample queries per (context, layer) that query-guided builds use.</summary>
    public SampleQueryLog SampleQueries => _samples;

    /// <summary>
    /// Remembers <paramref name="queries"/> (f32 [m, num_query_heads, head_dim], e.g. the prefill's queries sent
    /// with AppendKv, or decode queries) as sample queries of the context's layer, up to <see cref="SampleQueryLog.MaxPerLayer"/>.
    /// </summary>
    public void Observe(string contextId, int layer, ReadOnlySpan<float> queries, int queryFloats) => _samples.Add(contextId, layer, queries, queryFloats);

    /// <summary>Sample queries remembered for the context's layer (what its next query-guided build will use).</summary>
    public int SampleQueryCount(string contextId, int layer) => _samples.Count(contextId, layer);

    /// <summary>
    /// Where the <paramref name="spec"/> index of the snapshot's layer stands, and its ready view (null unless
    /// <see cref="IndexState.Ready"/>). Changes nothing: no entry is created, no build started (see <see cref="RequestUpdate"/>).
    /// A view built before the layer was rolled back and rewritten below it is never returned (status Stale).
    /// </summary>
    public IndexStatus Probe(string contextId, LayerSnapshot layer, string spec, out LayerIndexes? view)
    {
        view = null;
        if (!_entries.TryGetValue((contextId, layer.Layer, spec), out Entry? entry))
        {
            return new IndexStatus(IndexState.Absent, spec, layer.Layer, layer.Tokens);
        }

        lock (entry)
        {
            LayerIndexes? current = entry.Current;
            bool stale = current is not null && !StillDescribes(entry, layer);
            if (current is null || stale)
            {
                return new IndexStatus(StateWithoutView(entry), spec, layer.Layer, layer.Tokens, Stale: stale, Error: entry.Error, Problem: entry.Problem);
            }

            view = current;
            return new IndexStatus(
                IndexState.Ready, spec, layer.Layer, layer.Tokens, current.IndexedTokens,
                entry.Base?.Tokens ?? 0, entry.Base is null ? SegmentOrigin.None : entry.BaseOrigin, entry.Suffix?.Tokens ?? 0,
                Problem: entry.Problem);
        }
    }

    /// <summary>An entry's state apart from its view: building while an update runs, else failed after an error, else absent.</summary>
    private static IndexState StateWithoutView(Entry entry) =>
        entry.Pending is not null ? IndexState.Building : entry.Error is not null ? IndexState.Failed : IndexState.Absent;

    /// <summary>
    /// Every index the catalog holds for <paramref name="contextId"/> (or, with an empty id, for every context), for
    /// dashboards: state, indexed tokens, base/suffix split and memory, by (context, layer, spec). Opens no snapshot and
    /// changes nothing, so a view made before a rollback is listed as it is (<see cref="Probe"/> is the check a query makes).
    /// </summary>
    public List<(string ContextId, IndexStatus Status, long MemoryBytes)> List(string contextId = "")
    {
        var list = new List<(string, IndexStatus, long)>();
        foreach (KeyValuePair<(string Context, int Layer, string Spec), Entry> pair in _entries)
        {
            if (contextId.Length > 0 && pair.Key.Context != contextId)
            {
                continue;
            }

            Entry entry = pair.Value;
            lock (entry)
            {
                LayerIndexes? current = entry.Current;
                IndexState state = current is not null && entry.Pending is null ? IndexState.Ready : StateWithoutView(entry);
                var status = new IndexStatus(
                    state, pair.Key.Spec, pair.Key.Layer, 0, current?.IndexedTokens ?? 0,
                    entry.Base?.Tokens ?? 0, entry.Base is null ? SegmentOrigin.None : entry.BaseOrigin, entry.Suffix?.Tokens ?? 0,
                    Error: entry.Error, Problem: entry.Problem);
                list.Add((pair.Key.Context, status, current?.MemoryBytes ?? 0));
            }
        }

        list.Sort((a, b) => (a.Item1, a.Item2.Layer, a.Item2.Spec).CompareTo((b.Item1, b.Item2.Layer, b.Item2.Spec)));
        return list;
    }

    /// <summary>
    /// Asks the catalog to keep the <paramref name="spec"/> index of the snapshot's layer current: starts one
    /// background update when none is under way and there is no view yet, the view no longer describes the layer, or
    /// the unindexed full-block rows reached <see cref="ExtendStep"/>. Returns at once; <see cref="Probe"/> then says
    /// where it stands.
    /// </summary>
    public void RequestUpdate(string contextId, LayerSnapshot layer, string spec)
    {
        var key = (contextId, layer.Layer, spec);
        if (!_entries.ContainsKey(key) && _entries.Count >= MaxEntries)
        {
            ForgetLeastRecentlyUsed();
        }

        Entry entry = _entries.GetOrAdd(key, _ => new Entry());
        lock (entry)
        {
            entry.LastUse = Interlocked.Increment(ref _clock);
            LayerIndexes? current = entry.Current;
            if (current is not null && !StillDescribes(entry, layer))
            {
                current = null;
            }

            long fullTokens = layer.Tokens / layer.Model.BlockSize * layer.Model.BlockSize;
            bool wantUpdate = current is null || fullTokens - current.IndexedTokens >= ExtendStep(entry, layer.Model.BlockSize);
            if (wantUpdate && entry.Pending is null && !Volatile.Read(ref _disposed))
            {
                float[] samples = _samples.Snapshot(contextId, layer.Layer);
                UpdateStarted?.Invoke(Family(spec));
                Task update = Task.Run(() => UpdateAsync(entry, contextId, layer.Layer, spec, samples));
                entry.Pending = update;
                Track(update);
            }
        }
    }

    /// <summary>Completes when no update of that entry is under way (for tests and warm-up).</summary>
    public Task WhenIdle(string contextId, int layer, string spec)
    {
        if (!_entries.TryGetValue((contextId, layer, spec), out Entry? entry))
        {
            return Task.CompletedTask;
        }

        lock (entry)
        {
            return entry.Pending ?? Task.CompletedTask;
        }
    }

    /// <summary>Completes when every background update and index-file collection started so far is done.</summary>
    public Task WhenBackgroundWorkDone()
    {
        lock (_background)
        {
            return Task.WhenAll(_background);
        }
    }

    /// <summary>
    /// Deletes index files whose last block no context holds any more (a file still used by any context sharing
    /// the prefix is kept: that context holds the block). Returns how many were deleted.
    /// </summary>
    public int CollectGarbage()
    {
        if (_files is null)
        {
            return 0;
        }

        int deleted = _files.CollectGarbage(_store.HoldsBlock, (name, aside, reason) =>
        {
            // Reported now, and again in the explain line of the first context that needs the segment.
            Interlocked.Increment(ref _corruptFiles);
            var problem = new IndexFileProblem(IndexFileProblemKind.Unreadable, name, reason, aside);
            _problems.Enqueue(problem);
            _movedAside[name] = problem;
        });

        Interlocked.Add(ref _collectedFiles, deleted);
        return deleted;
    }

    /// <summary>
    /// Stops new builds and waits for running ones: a build reads the store's native blocks, so it must
    /// finish before the store that owns them is disposed.
    /// </summary>
    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);

        // Every update and collection, including those of views forgotten meanwhile.
        WhenBackgroundWorkDone().Wait();
    }

    /// <summary>Full-block rows that must be unindexed before an update runs: max(block, min(grid, max(256, suffix / 8))).</summary>
    private long ExtendStep(Entry entry, int blockSize)
    {
        // Extending copies the suffix first, so steps grow with it (amortized constant work per row) while the
        // exactly scanned tail stays below one grid step.
        long suffix = entry.Suffix?.Tokens ?? 0;
        return Math.Max(blockSize, Math.Min(SegmentTokens, Math.Max(256, suffix / 8)));
    }

    private static bool StillDescribes(Entry entry, LayerSnapshot layer)
    {
        long end = entry.Current?.IndexedTokens ?? 0;
        if (end == 0)
        {
            return true;
        }

        int last = (int)(end / layer.Model.BlockSize) - 1;
        return end <= layer.Tokens && last < layer.Blocks.Length
            && layer.TryGetSealed(last, out BlockAddress address, out ulong checksum)
            && address == entry.EndAddress && checksum == entry.EndChecksum;
    }

    /// <summary>
    /// Forgets a deleted context: its entries (and the segments only they held) and its sample queries. Without this they
    /// stayed until pushed out by newer contexts, so a server under churn held up to <see cref="MaxEntries"/> dead
    /// entries and their samples. Shared segments stay in the shared table for other contexts with the same content.
    /// </summary>
    public void Forget(string contextId)
    {
        foreach ((string Context, int Layer, string Spec) key in _entries.Keys)
        {
            if (key.Context == contextId)
            {
                _entries.TryRemove(key, out _);
            }
        }

        _samples.Forget(contextId);
    }

    private void ForgetLeastRecentlyUsed()
    {
        KeyValuePair<(string, int, string), Entry>? oldest = null;
        foreach (KeyValuePair<(string, int, string), Entry> e in _entries)
        {
            if (oldest is null || e.Value.LastUse < oldest.Value.Value.LastUse)
            {
                oldest = e;
            }
        }

        if (oldest is { } victim)
        {
            // Its segments stay alive while queries use them; shared ones stay in the shared table.
            _entries.TryRemove(victim);
        }
    }

    private static string Family(string spec)
    {
        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? spec : spec[..colon];
    }

    private async Task UpdateAsync(Entry entry, string contextId, int layerIndex, string spec, float[] samples)
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            using LayerSnapshot layer = _store.OpenLayer(contextId, layerIndex);
            int b = layer.Model.BlockSize;
            int unchanged = entry.Keys.Refresh(layer);
            int full = entry.Keys.Count;
            long fullTokens = (long)full * b;
            IndexSegment? baseSegment = entry.Base;
            IndexSegment? suffix = entry.Suffix;
            long covered = suffix?.EndToken ?? baseSegment?.EndToken ?? 0;
            if (covered > (long)unchanged * b)
            {
                baseSegment = null;
                suffix = null;
                covered = 0;
            }

            IndexFileProblem? note = entry.Problem;
            SegmentOrigin baseOrigin = entry.BaseOrigin;
            long baseEnd = baseSegment?.EndToken ?? 0;
            bool rebase = baseSegment is null && suffix is null
                || fullTokens - baseEnd >= Math.Max(GridBlocks(b) * (long)b, baseEnd);
            if (rebase)
            {
                (IndexSegment? found, SegmentOrigin origin, IndexFileProblem? problem) = await BaseFor(entry, layer, spec, samples).ConfigureAwait(false);
                note = problem ?? note;
                if (!ReferenceEquals(found, baseSegment) || found is null)
                {
                    baseSegment = found;
                    baseOrigin = origin;
                    baseEnd = baseSegment?.EndToken ?? 0;
                    suffix = null;
                }
            }

            if (fullTokens > baseEnd && (suffix is null || suffix.EndToken < fullTokens))
            {
                int guided = samples.Length / (layer.Model.NumQueryHeads * layer.Model.HeadDim);
                if (suffix is null || (suffix.QueryGuided && guided >= 2 * Math.Max(1, suffix.SampleQueries)))
                {
                    suffix = IndexSegment.Build(layer, spec, baseEnd, fullTokens, samples);
                    Interlocked.Increment(ref _builds);
                    Interlocked.Add(ref _builtTokens, suffix.Tokens);
                }
                else
                {
                    long from = suffix.EndToken;
                    suffix = suffix.Extended(layer, fullTokens);
                    Interlocked.Increment(ref _extends);
                    Interlocked.Add(ref _extendedTokens, fullTokens - from);
                }
            }

            var segments = new List<IndexSegment>(2);
            if (baseSegment is not null)
            {
                segments.Add(baseSegment);
            }

            if (suffix is not null)
            {
                segments.Add(suffix);
            }

            var view = new LayerIndexes(spec, segments, ownsSegments: false);
            BlockAddress endAddress = default;
            ulong endChecksum = 0;
            if (view.IndexedTokens > 0)
            {
                layer.TryGetSealed((int)(view.IndexedTokens / b) - 1, out endAddress, out endChecksum);
            }

            lock (entry)
            {
                // Replaced segments are not disposed: a query may still be searching them; the GC reclaims them.
                entry.Base = baseSegment;
                entry.BaseOrigin = baseOrigin;
                entry.Suffix = suffix;
                entry.EndAddress = endAddress;
                entry.EndChecksum = endChecksum;
                entry.Current = view;
                entry.Problem = note;
                entry.Error = null;
                entry.Pending = null;
            }

            UpdateFinished?.Invoke(Family(spec), System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, false);

            // For routers and operators: which context layer is searchable by which index now, up to which token.
            _store.Events.Emit(KvEventKind.IndexReady, layer.Model.Name, $"{contextId}/{layerIndex}", (int)Math.Min(int.MaxValue, suffix?.EndToken ?? baseSegment?.EndToken ?? 0), spec);
        }
        catch (Exception e)
        {
            lock (entry)
            {
                entry.Error = e.Message;
                entry.Pending = null;
            }

            UpdateFinished?.Invoke(Family(spec), System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, e is not KvDbException { Code: KvDbErrorCode.NotFound });

            if (e is KvDbException { Code: KvDbErrorCode.NotFound })
            {
                _entries.TryRemove((contextId, layerIndex, spec), out _);
                _samples.Forget(contextId, layerIndex);
                StartGarbageCollection();
            }
        }
    }

    /// <summary>
    /// The base a context should use now: the longest shared one (memory, then disk) at a grid point of its
    /// blocks that leaves a suffix shorter than max(grid, base); otherwise a new one at its last grid point.
    /// Null when the context has no full grid step yet. Also returns a problem met on the way (corrupt file).
    /// </summary>
    private async Task<(IndexSegment? Segment, SegmentOrigin Origin, IndexFileProblem? Problem)> BaseFor(Entry entry, LayerSnapshot layer, string spec, float[] samples)
    {
        int b = layer.Model.BlockSize;
        int grid = GridBlocks(b);
        int full = entry.Keys.Count;
        int top = full / grid * grid;
        if (top == 0)
        {
            return (null, SegmentOrigin.None, null);
        }

        for (int end = top; end >= grid && full - end < Math.Max(grid, end); end -= grid)
        {
            var key = (entry.Keys[end - 1], layer.Layer, spec);
            bool known = _shared.ContainsKey(key);
            if (known || _files?.Has(key.Item1, key.Layer, spec) == true)
            {
                (IndexSegment segment, SegmentOrigin origin, IndexFileProblem? problem) = await Shared(key, layer, end, spec, samples).ConfigureAwait(false);
                return (segment, origin, problem);
            }
        }

        return await Shared((entry.Keys[top - 1], layer.Layer, spec), layer, top, spec, samples).ConfigureAwait(false);
    }

    /// <summary>The shared segment for <paramref name="key"/>, loading or building it once however many contexts ask at the same time.</summary>
    private async Task<(IndexSegment Segment, SegmentOrigin Origin, IndexFileProblem? Problem)> Shared((UInt128 Key, int Layer, string Spec) key, LayerSnapshot layer, int endBlock, string spec, float[] samples)
    {
        if (!_shared.ContainsKey(key) && _shared.Count >= MaxShared)
        {
            ForgetOldestShared();
        }

        bool mine = false;
        SharedSegment shared = _shared.GetOrAdd(key, _ =>
        {
            mine = true;
            return new SharedSegment();
        });
        mine = false;
        Task<(IndexSegment, SegmentOrigin, IndexFileProblem?)> task;
        lock (shared)
        {
            shared.LastUse = Interlocked.Increment(ref _clock);
            if (shared.Task is null || shared.Task.IsFaulted)
            {
                mine = true;
                shared.Task = Task.Run(() => LoadOrBuild(key, layer, endBlock, spec, samples));
            }

            task = shared.Task;
        }

        try
        {
            (IndexSegment segment, SegmentOrigin origin, IndexFileProblem? problem) = await task.ConfigureAwait(false);
            if (!mine)
            {
                Interlocked.Increment(ref _sharedReuses);
                return (segment, SegmentOrigin.Shared, problem);
            }

            return (segment, origin, problem);
        }
        catch
        {
            _shared.TryRemove(KeyValuePair.Create(key, shared));
            throw;
        }
    }

    private (IndexSegment Segment, SegmentOrigin Origin, IndexFileProblem? Problem) LoadOrBuild((UInt128 Key, int Layer, string Spec) key, LayerSnapshot layer, int endBlock, string spec, float[] samples)
    {
        string name = IndexSegmentFiles.FileName(key.Key, key.Layer, spec);
        IndexFileProblem? problem = null;
        if (_files is not null && _files.Has(key.Key, key.Layer, spec))
        {
            try
            {
                IndexSegment loaded = _files.Load(key.Key, key.Layer, spec, layer.Model);
                Interlocked.Increment(ref _loads);
                return (loaded, SegmentOrigin.LoadedFromDisk, null);
            }
            catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException or ArgumentException)
            {
                if (!_movedAside.ContainsKey(name))
                {
                    string aside = _files.MoveAside(key.Key, key.Layer, spec);
                    Interlocked.Increment(ref _corruptFiles);
                    problem = new IndexFileProblem(IndexFileProblemKind.Unreadable, name, e.Message, aside);
                    _problems.Enqueue(problem);
                }
            }
        }

        // The startup collection may have moved this very file aside (it records that before the file leaves the set).
        if (_movedAside.TryRemove(name, out IndexFileProblem? collected))
        {
            problem = collected;
        }

        long end = (long)endBlock * layer.Model.BlockSize;
        layer.TryGetSealed(endBlock - 1, out BlockAddress address, out ulong checksum);
        IndexSegment built = IndexSegment.Build(layer, spec, 0, end, samples);
        built.ContentKey = key.Key;
        built.EndAddress = address;
        built.EndChecksum = checksum;
        Interlocked.Increment(ref _builds);
        Interlocked.Add(ref _builtTokens, end);
        if (_files is not null)
        {
            try
            {
                _files.Save(built, key.Layer, layer.Model);
                Interlocked.Increment(ref _savedFiles);
            }
            catch (IOException e)
            {
                var failed = new IndexFileProblem(IndexFileProblemKind.NotSaved, name, e.Message);
                _problems.Enqueue(failed);
                problem ??= failed;
            }
        }

        return (built, SegmentOrigin.Built, problem);
    }

    private void ForgetOldestShared()
    {
        KeyValuePair<(UInt128, int, string), SharedSegment>? oldest = null;
        foreach (KeyValuePair<(UInt128, int, string), SharedSegment> e in _shared)
        {
            if (oldest is null || e.Value.LastUse < oldest.Value.Value.LastUse)
            {
                oldest = e;
            }
        }

        if (oldest is { } victim)
        {
            _shared.TryRemove(victim);
        }
    }

    private void StartGarbageCollection()
    {
        if (_files is null || Volatile.Read(ref _disposed))
        {
            return;
        }

        Track(Task.Run(() =>
        {
            try
            {
                CollectGarbage();
            }
            catch (IOException e)
            {
                _problems.Enqueue(new IndexFileProblem(IndexFileProblemKind.CollectionFailed, _files.DirectoryPath, e.Message));
            }
        }));
    }

    private void Track(Task task)
    {
        lock (_background)
        {
            _background.RemoveAll(t => t.IsCompleted);
            _background.Add(task);
        }
    }

    private int GridBlocks(int blockSize) => Math.Max(1, (SegmentTokens + blockSize - 1) / blockSize);

    private sealed class Entry
    {
        public LayerIndexes? Current { get; set; }

        public IndexSegment? Base { get; set; }

        public IndexSegment? Suffix { get; set; }

        public BlockAddress EndAddress { get; set; }

        public ulong EndChecksum { get; set; }

        public SegmentOrigin BaseOrigin { get; set; }

        public Task? Pending { get; set; }

        public string? Error { get; set; }

        public IndexFileProblem? Problem { get; set; }

        public long LastUse { get; set; }

        public BlockContentKeys Keys { get; } = new();
    }

    private sealed class SharedSegment
    {
        public Task<(IndexSegment, SegmentOrigin, IndexFileProblem?)>? Task { get; set; }

        public long LastUse { get; set; }
    }
}

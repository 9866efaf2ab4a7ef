using System.Collections.Concurrent;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// Indexes per (context, layer, family spec), built in the background the first time a sparse plan asks
/// for them and rebuilt when the layer has grown well past what they cover. Answers never wait for a build:
/// until an index is ready the planner answers exactly, and once it is ready the rows appended after the
/// build are the plan's unindexed tail, scanned exactly. Query-guided families are built from the queries
/// this layer has been asked so far (up to <see cref="MaxSampleQueries"/>).
/// </summary>
public sealed class LayerIndexCatalog : IDisposable
{
    /// <summary>Query vectors remembered per (context, layer) as samples for query-guided builds.</summary>
    public const int MaxSampleQueries = 256;

    private const int MaxEntries = 512;
    private readonly IKvStore _store;
    private readonly ConcurrentDictionary<(string Context, int Layer, string Spec), Entry> _entries = new();
    private readonly ConcurrentDictionary<(string Context, int Layer), SampleQueries> _samples = new();
    private bool _disposed;

    /// <summary>Creates a catalog over <paramref name="store"/>.</summary>
    public LayerIndexCatalog(IKvStore store)
    {
        _store = store;
    }

    /// <summary>Remembers a request's queries (f32 [q, num_query_heads, head_dim]) as sample queries of its layer.</summary>
    public void Observe(AttentionQuery query, int queryFloats)
    {
        SampleQueries samples = _samples.GetOrAdd((query.ContextId, query.Layer), _ => new SampleQueries());
        samples.Add(query.Queries, queryFloats);
    }

    /// <summary>
    /// The ready indexes of <paramref name="spec"/> for the snapshot's layer, or null while they are being built
    /// (a build is started if none is under way). <paramref name="status"/> says which, for the explain line.
    /// </summary>
    public LayerIndexes? Get(string contextId, LayerSnapshot layer, string spec, out string status)
    {
        var key = (contextId, layer.Layer, spec);
        if (!_entries.ContainsKey(key) && _entries.Count >= MaxEntries)
        {
            // Bounded: forget an arbitrary entry; a later request rebuilds it.
            foreach (var k in _entries.Keys)
            {
                _entries.TryRemove(k, out _);
                break;
            }
        }

        Entry entry = _entries.GetOrAdd(key, _ => new Entry());
        lock (entry)
        {
            LayerIndexes? current = entry.Current;
            long stale = current is null ? long.MaxValue : layer.Tokens - current.IndexedTokens;
            bool wantBuild = current is null || stale > Math.Max(4096, current.IndexedTokens / 4);
            if (wantBuild && entry.Pending is null && !Volatile.Read(ref _disposed))
            {
                float[] samples = _samples.TryGetValue((contextId, layer.Layer), out SampleQueries? s) ? s.Snapshot() : [];
                entry.Pending = Task.Run(() => BuildInto(entry, contextId, layer.Layer, spec, samples));
            }

            if (current is null)
            {
                status = entry.Error is null
                    ? $"index \"{spec}\" for layer {layer.Layer} is being built in the background"
                    : $"index \"{spec}\" for layer {layer.Layer} failed to build ({entry.Error}); retrying";
                return null;
            }

            status = $"index \"{spec}\" covers {current.IndexedTokens} of {layer.Tokens} tokens, the tail is scanned exactly";
            return current;
        }
    }

    /// <summary>Completes when no build of that entry is under way (for tests and warm-up).</summary>
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

    /// <summary>
    /// Stops new builds and waits for running ones: a build reads the store's native blocks, so it must
    /// finish before the store that owns them is disposed.
    /// </summary>
    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        var pending = new List<Task>();
        foreach (Entry entry in _entries.Values)
        {
            lock (entry)
            {
                if (entry.Pending is { } task)
                {
                    pending.Add(task);
                }
            }
        }

        Task.WaitAll([.. pending]);
    }

    private void BuildInto(Entry entry, string contextId, int layer, string spec, float[] samples)
    {
        try
        {
            using LayerSnapshot snapshot = _store.OpenLayer(contextId, layer);
            LayerIndexes built = LayerIndexes.Build(snapshot, spec, samples);
            lock (entry)
            {
                // The replaced indexes are not disposed: a query may still be searching them; the GC reclaims them.
                entry.Current = built;
                entry.Error = null;
                entry.Pending = null;
            }
        }
        catch (Exception e)
        {
            lock (entry)
            {
                entry.Error = e.Message;
                entry.Pending = null;
            }

            if (e is KvDbException { Code: KvDbErrorCode.NotFound })
            {
                _entries.TryRemove((contextId, layer, spec), out _);
                _samples.TryRemove((contextId, layer), out _);
            }
        }
    }

    private sealed class Entry
    {
        public LayerIndexes? Current { get; set; }

        public Task? Pending { get; set; }

        public string? Error { get; set; }
    }

    private sealed class SampleQueries
    {
        private readonly List<float> _values = [];
        private int _count;

        public void Add(float[] queries, int queryFloats)
        {
            lock (_values)
            {
                for (int start = 0; start + queryFloats <= queries.Length && _count < MaxSampleQueries; start += queryFloats)
                {
                    _values.AddRange(queries.AsSpan(start, queryFloats));
                    _count++;
                }
            }
        }

        public float[] Snapshot()
        {
            lock (_values)
            {
                return [.. _values];
            }
        }
    }
}

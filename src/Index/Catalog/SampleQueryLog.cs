using System.Collections.Concurrent;

namespace KvDb.Index.Catalog;

/// <summary>
/// Query vectors remembered per (context, layer), e.g. the prefill's queries sent with AppendKv or the decode
/// queries asked so far, as sample queries for query-guided index builds. Bounded twice: at most
/// <see cref="MaxPerLayer"/> vectors per layer (a long prefill keeps evenly spaced rows) and at most
/// <paramref name="maxLayers"/> layers (an arbitrary one is forgotten: its next build just has fewer samples).
/// </summary>
public sealed class SampleQueryLog(int maxLayers)
{
    /// <summary>Query vectors remembered per (context, layer).</summary>
    public const int MaxPerLayer = 256;

    private readonly ConcurrentDictionary<(string Context, int Layer), Samples> _layers = new();

    /// <summary>Remembers <paramref name="queries"/> (f32 [m, num_query_heads, head_dim], <paramref name="queryFloats"/> floats a row).</summary>
    public void Add(string contextId, int layer, ReadOnlySpan<float> queries, int queryFloats)
    {
        if (_layers.Count >= maxLayers && !_layers.ContainsKey((contextId, layer)))
        {
            foreach ((string, int) k in _layers.Keys)
            {
                _layers.TryRemove(k, out _);
                break;
            }
        }

        _layers.GetOrAdd((contextId, layer), _ => new Samples()).Add(queries, queryFloats);
    }

    /// <summary>Vectors remembered for the context's layer.</summary>
    public int Count(string contextId, int layer) => _layers.TryGetValue((contextId, layer), out Samples? s) ? s.Count : 0;

    /// <summary>A copy of the vectors remembered for the context's layer (f32 [m, num_query_heads, head_dim]; empty when none).</summary>
    public float[] Snapshot(string contextId, int layer) => _layers.TryGetValue((contextId, layer), out Samples? s) ? s.Snapshot() : [];

    /// <summary>Forgets every layer of the context (it was deleted): its vectors would otherwise stay until pushed out.</summary>
    public void Forget(string contextId)
    {
        foreach ((string Context, int Layer) k in _layers.Keys)
        {
            if (k.Context == contextId)
            {
                _layers.TryRemove(k, out _);
            }
        }
    }

    /// <summary>Forgets the context's layer (the context is gone).</summary>
    public void Forget(string contextId, int layer) => _layers.TryRemove((contextId, layer), out _);

    private sealed class Samples
    {
        private readonly List<float> _values = [];
        private int _count;

        public int Count
        {
            get
            {
                lock (_values)
                {
                    return _count;
                }
            }
        }

        public void Add(ReadOnlySpan<float> queries, int queryFloats)
        {
            lock (_values)
            {
                int offered = queries.Length / queryFloats;
                int room = MaxPerLayer - _count;
                if (offered <= 0 || room <= 0)
                {
                    return;
                }

                // A prefill sends thousands of rows: keep evenly spaced ones rather than only its first tokens,
                // so the samples cover the whole prompt's query distribution.
                int take = Math.Min(offered, room);
                for (int i = 0; i < take; i++)
                {
                    long row = (long)i * offered / take;
                    _values.AddRange(queries.Slice((int)(row * queryFloats), queryFloats));
                }

                _count += take;
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

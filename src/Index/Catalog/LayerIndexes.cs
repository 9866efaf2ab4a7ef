using KvDb.Store;

namespace KvDb.Index.Catalog;

/// <summary>
/// The indexes a sparse plan searches for one layer: contiguous <see cref="IndexSegment"/>s from position 0
/// (the catalog's shared base and the context's own suffix). Each segment is searched separately with the
/// plan's budget and the candidates are united. Tokens at and after <see cref="IndexedTokens"/> are in no
/// segment; plans attend that tail exactly, so an answer never waits for an index build.
/// </summary>
public sealed class LayerIndexes : IDisposable
{
    private readonly IndexSegment[] _segments;
    private readonly bool _ownsSegments;

    /// <summary>Creates the view over <paramref name="segments"/> (contiguous from 0); <paramref name="ownsSegments"/>: Dispose releases them.</summary>
    public LayerIndexes(string spec, IReadOnlyList<IndexSegment> segments, bool ownsSegments)
    {
        ArgumentNullException.ThrowIfNull(segments);
        long next = 0;
        foreach (IndexSegment s in segments)
        {
            if (s.StartToken != next || s.Spec != spec || s.KvHeads != segments[0].KvHeads)
            {
                throw new ArgumentException("segments must be contiguous from position 0, of one spec and one KV head count");
            }

            next = s.EndToken;
        }

        Spec = spec;
        IndexedTokens = next;
        _segments = [.. segments];
        _ownsSegments = ownsSegments;
    }

    /// <summary>The spec every segment's indexes were created from.</summary>
    public string Spec { get; }

    /// <summary>Tokens covered by the segments: positions [0, IndexedTokens).</summary>
    public long IndexedTokens { get; }

    /// <summary>The segments, in position order (may be empty: everything is tail).</summary>
    public IReadOnlyList<IndexSegment> Segments => _segments;

    /// <summary>Bytes held by all segments' indexes.</summary>
    public long MemoryBytes
    {
        get
        {
            long bytes = 0;
            foreach (IndexSegment s in _segments)
            {
                bytes += s.MemoryBytes;
            }

            return bytes;
        }
    }

    /// <summary>
    /// One segment with <paramref name="spec"/> for every KV head over all rows of <paramref name="layer"/>,
    /// owned by the result. <paramref name="sampleQueries"/> (f32 [m, num_query_heads, head_dim], e.g. the
    /// prefill's queries; may be empty) guide query-aware families.
    /// </summary>
    public static LayerIndexes Build(LayerSnapshot layer, string spec, ReadOnlySpan<float> sampleQueries = default)
    {
        IndexSegment segment = IndexSegment.Build(layer, spec, 0, layer.Tokens, sampleQueries);
        return new LayerIndexes(spec, [segment], ownsSegments: true);
    }

    /// <summary>Releases the segments when this view owns them (catalog views do not: their segments may be shared).</summary>
    public void Dispose()
    {
        if (_ownsSegments)
        {
            foreach (IndexSegment s in _segments)
            {
                s.Dispose();
            }
        }
    }
}

using KvDb.Index;
using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// One index per KV head of a layer, built from a pinned snapshot: the structure a sparse plan searches.
/// Tokens appended after the build (positions ≥ <see cref="IndexedTokens"/>) are not in it; plans attend
/// that tail exactly, so an answer never waits for an index build.
/// </summary>
public sealed class LayerIndexes : IDisposable
{
    private readonly IKeyIndex[] _heads;

    private LayerIndexes(string spec, long indexedTokens, IKeyIndex[] heads)
    {
        Spec = spec;
        IndexedTokens = indexedTokens;
        _heads = heads;
    }

    /// <summary>The spec every head's index was created from.</summary>
    public string Spec { get; }

    /// <summary>Tokens covered by the indexes (the snapshot's length at build time).</summary>
    public long IndexedTokens { get; }

    /// <summary>KV heads indexed.</summary>
    public int KvHeads => _heads.Length;

    /// <summary>The index of one KV head.</summary>
    public IKeyIndex this[int kvHead] => _heads[kvHead];

    /// <summary>Bytes held by all heads' indexes.</summary>
    public long MemoryBytes
    {
        get
        {
            long bytes = 0;
            foreach (IKeyIndex index in _heads)
            {
                bytes += index.MemoryBytes;
            }

            return bytes;
        }
    }

    /// <summary>
    /// Builds <paramref name="spec"/> for every KV head of <paramref name="layer"/>. <paramref name="sampleQueries"/>
    /// (f32 [m, num_query_heads, head_dim], e.g. the prefill's queries; may be empty) guide query-aware
    /// families: each KV head gets the vectors of its GQA group's query heads.
    /// </summary>
    public static LayerIndexes Build(LayerSnapshot layer, string spec, ReadOnlySpan<float> sampleQueries = default)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int rows = (int)KvBlockReader.CountRows(layer.Blocks);
        var keys = new float[(long)rows * d];
        var positions = new long[rows];
        int groupWidth = g.GroupSize * d;
        int samples = sampleQueries.Length / (g.NumQueryHeads * d);
        var heads = new IKeyIndex[g.NumKvHeads];
        try
        {
            for (int kv = 0; kv < g.NumKvHeads; kv++)
            {
                KvBlockReader.ReadHeadRows(g, layer.Blocks, kv, values: false, keys, positions);
                heads[kv] = IndexFactory.Create(spec, d);
                if (heads[kv] is IQueryGuidedIndex guided && samples > 0)
                {
                    var group = new float[samples * groupWidth];
                    for (int s = 0; s < samples; s++)
                    {
                        sampleQueries.Slice((s * g.NumQueryHeads + kv * g.GroupSize) * d, groupWidth).CopyTo(group.AsSpan(s * groupWidth, groupWidth));
                    }

                    guided.AddSampleQueries(group);
                }

                heads[kv].Build(keys, positions);
            }
        }
        catch
        {
            foreach (IKeyIndex? index in heads)
            {
                index?.Dispose();
            }

            throw;
        }

        return new LayerIndexes(spec, layer.Tokens, heads);
    }

    /// <summary>Releases every head's index.</summary>
    public void Dispose()
    {
        foreach (IKeyIndex index in _heads)
        {
            index.Dispose();
        }
    }
}

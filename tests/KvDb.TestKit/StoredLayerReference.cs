using KvDb.Kernels;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.TestKit;

/// <summary>
/// The plain f64 reference over a stored layer: every row as the store holds it (after bf16/f16 rounding), read
/// once, then <see cref="ReferenceAttention.Compute"/> — softmax over all tokens outside the exclude range.
/// </summary>
public sealed class StoredLayerReference
{
    private readonly float[] _keys;
    private readonly float[] _values;
    private readonly ModelSchema _model;

    /// <summary>Reads every row of <paramref name="layer"/>.</summary>
    public StoredLayerReference(LayerSnapshot layer)
    {
        _model = layer.Model;
        AttentionGeometry g = layer.Model.Geometry;
        int n = (int)layer.Tokens;
        int d = g.HeadDim;
        int hkv = g.NumKvHeads;
        _keys = new float[(long)n * hkv * d];
        _values = new float[(long)n * hkv * d];
        var head = new float[(long)n * d];
        var positions = new long[n];
        for (int kv = 0; kv < hkv; kv++)
        {
            foreach (bool values in new[] { false, true })
            {
                KvBlockReader.ReadHeadRows(g, layer.Blocks, kv, values, head, positions);
                float[] into = values ? _values : _keys;
                for (int t = 0; t < n; t++)
                {
                    head.AsSpan(t * d, d).CopyTo(into.AsSpan((int)((((long)t * hkv) + kv) * d), d));
                }
            }
        }

        Tokens = n;
        Scale = g.Scale;
    }

    /// <summary>Tokens read.</summary>
    public int Tokens { get; }

    /// <summary>The layer's softmax scale.</summary>
    public double Scale { get; }

    /// <summary>Keys as stored, f32 [tokens, kv heads, head dim].</summary>
    public ReadOnlySpan<float> Keys => _keys;

    /// <summary>Values as stored, f32 [tokens, kv heads, head dim].</summary>
    public ReadOnlySpan<float> Values => _values;

    /// <summary>Exact attention of <paramref name="queries"/> [q, query heads, head dim] in f64, outside [excludeStart, excludeEnd).</summary>
    public (double[] Output, double[] Lse) Attend(ReadOnlySpan<float> queries, int numQueries, long excludeStart = 0, long excludeEnd = 0) =>
        ReferenceAttention.Compute(_keys, _values, queries, numQueries, _model.NumQueryHeads, _model.NumKvHeads, _model.HeadDim, Scale, excludeStart, excludeEnd);
}

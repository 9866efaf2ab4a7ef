using KvDb.Kernels;
using KvDb.Store;

namespace KvDb.Index.Catalog;

/// <summary>
/// One index per KV head over the rows [<see cref="StartToken"/>, <see cref="EndToken"/>) of a layer: a piece
/// of a <see cref="LayerIndexes"/>. A segment that starts at 0 and ends on a block boundary is named by the
/// content key of its blocks (<see cref="IndexContentKey"/>) and may be shared by every context whose blocks
/// start the same way; such a segment is never modified (growth makes an extended copy).
/// </summary>
public sealed class IndexSegment : IDisposable
{
    private readonly IKeyIndex[] _heads;

    internal IndexSegment(string spec, long startToken, long endToken, IKeyIndex[] heads, int sampleQueries)
    {
        QueryGuided = heads.Length > 0 && heads[0] is IQueryGuidedIndex;
        Spec = spec;
        StartToken = startToken;
        EndToken = endToken;
        _heads = heads;
        SampleQueries = sampleQueries;
    }

    /// <summary>The spec every head's index was created from.</summary>
    public string Spec { get; }

    /// <summary>First position covered.</summary>
    public long StartToken { get; }

    /// <summary>Positions below this are covered (from <see cref="StartToken"/>).</summary>
    public long EndToken { get; }

    /// <summary>Rows covered.</summary>
    public long Tokens => EndToken - StartToken;

    /// <summary>KV heads indexed.</summary>
    public int KvHeads => _heads.Length;

    /// <summary>True for query-guided families (their structure depends on the sample queries).</summary>
    public bool QueryGuided { get; }

    /// <summary>Sample queries (per KV head) the query-guided families were built with; 0 for the others.</summary>
    public int SampleQueries { get; }

    /// <summary>The content key of blocks [0, EndToken) when the segment is shareable (starts at 0, ends on a sealed block), else null.</summary>
    public UInt128? ContentKey { get; internal set; }

    /// <summary>Address of the last block covered, for shareable segments (files derived from it are garbage once it is gone).</summary>
    public BlockAddress EndAddress { get; internal set; }

    /// <summary>Content checksum of the last block covered, for shareable segments.</summary>
    public ulong EndChecksum { get; internal set; }

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
    /// Builds <paramref name="spec"/> for every KV head over rows [<paramref name="start"/>, <paramref name="end"/>)
    /// of <paramref name="layer"/> (both on block boundaries, or <paramref name="end"/> = the layer's length).
    /// <paramref name="sampleQueries"/> (f32 [m, num_query_heads, head_dim]; may be empty) guide query-aware
    /// families: each KV head gets the vectors of its GQA group's query heads.
    /// </summary>
    public static IndexSegment Build(LayerSnapshot layer, string spec, long start, long end, ReadOnlySpan<float> sampleQueries = default)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int samples = sampleQueries.Length / (g.NumQueryHeads * g.HeadDim);
        var groups = new float[g.NumKvHeads][];
        for (int kv = 0; kv < g.NumKvHeads; kv++)
        {
            groups[kv] = samples > 0 ? GroupSamples(g, sampleQueries, samples, kv) : [];
        }

        var heads = new IKeyIndex[g.NumKvHeads];
        ForEachHead(layer, start, end, heads, (kv, keys, positions) =>
        {
            IKeyIndex index = IndexFactory.Create(spec, g.HeadDim);
            heads[kv] = index;
            if (index is IQueryGuidedIndex guided && samples > 0)
            {
                guided.AddSampleQueries(groups[kv]);
            }

            index.Build(keys, positions);
        });

        return new IndexSegment(spec, start, end, heads, heads[0] is IQueryGuidedIndex ? samples : 0);
    }

    /// <summary>
    /// A copy of this segment grown by the rows [EndToken, <paramref name="end"/>) of <paramref name="layer"/>
    /// through <see cref="IKeyIndex.Extend"/>. The copy is made first (through the family's Save/Load, exact)
    /// because Extend may not run while other threads search: queries keep using this segment meanwhile.
    /// </summary>
    public IndexSegment Extended(LayerSnapshot layer, long end)
    {
        var heads = new IKeyIndex[_heads.Length];
        ForEachHead(layer, EndToken, end, heads, (kv, keys, positions) =>
        {
            heads[kv] = Copy(_heads[kv]);
            heads[kv].Extend(keys, positions);
        });

        return new IndexSegment(Spec, StartToken, end, heads, SampleQueries);
    }

    /// <summary>
    /// Runs <paramref name="work"/> for every KV head with that head's keys of rows [start, end) (f32 [rows, dim])
    /// and their positions, heads in parallel up to the core count: each head's index is independent, and one
    /// head at a time left all but one core idle (a 1M-token layer took minutes to index on a 16-core host).
    /// On failure every index already made is disposed and the first error is rethrown as it was.
    /// </summary>
    private static void ForEachHead(LayerSnapshot layer, long start, long end, IKeyIndex?[] heads, Action<int, float[], long[]> work)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int rows = (int)KvBlockReader.CountRows(Blocks(layer, start, end));
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Math.Min(g.NumKvHeads, Environment.ProcessorCount)) };
        try
        {
            Parallel.For(
                0,
                g.NumKvHeads,
                options,
                () => (Keys: new float[(long)rows * g.HeadDim], Positions: new long[rows]),
                (kv, _, buffers) =>
                {
                    KvBlockReader.ReadHeadRows(g, Blocks(layer, start, end), kv, values: false, buffers.Keys, buffers.Positions);
                    work(kv, buffers.Keys, buffers.Positions);
                    return buffers;
                },
                _ => { });
        }
        catch (AggregateException e)
        {
            DisposeAll(heads);
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }
        catch
        {
            DisposeAll(heads);
            throw;
        }
    }

    /// <summary>Releases every head's index.</summary>
    public void Dispose() => DisposeAll(_heads);

    private static IKeyIndex Copy(IKeyIndex index)
    {
        using var buffer = new MemoryStream();
        index.Save(buffer);
        buffer.Position = 0;
        return IndexFactory.Load(buffer);
    }

    private static ReadOnlySpan<KvBlockRef> Blocks(LayerSnapshot layer, long start, long end)
    {
        int b = layer.Model.BlockSize;
        if (start < 0 || end < start || end > layer.Tokens || start % b != 0 || (end % b != 0 && end != layer.Tokens))
        {
            throw new ArgumentException($"rows [{start}, {end}) are not block-aligned rows of the layer's {layer.Tokens} tokens");
        }

        int first = (int)(start / b);
        int last = (int)((end + b - 1) / b);
        return layer.Blocks[first..last];
    }

    private static float[] GroupSamples(AttentionGeometry g, ReadOnlySpan<float> sampleQueries, int samples, int kv)
    {
        int d = g.HeadDim;
        int groupWidth = g.GroupSize * d;
        var group = new float[samples * groupWidth];
        for (int s = 0; s < samples; s++)
        {
            sampleQueries.Slice((int)(g.QueryHead(s, kv, 0) * d), groupWidth).CopyTo(group.AsSpan(s * groupWidth, groupWidth));
        }

        return group;
    }

    private static void DisposeAll(IKeyIndex?[] heads)
    {
        foreach (IKeyIndex? index in heads)
        {
            index?.Dispose();
        }
    }
}

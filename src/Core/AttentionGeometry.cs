namespace KvDb.Core;

/// <summary>Shape of one layer's attention: heads (GQA), head size, block layout, dtype and scale.</summary>
public readonly record struct AttentionGeometry(
    int NumQueryHeads,
    int NumKvHeads,
    int HeadDim,
    int BlockCapacity,
    KvDType DType,
    float Scale)
{
    /// <summary>Query heads served by one KV head; query head h reads KV head h / GroupSize.</summary>
    public int GroupSize => NumQueryHeads / NumKvHeads;

    /// <summary>
    /// Query head of row <paramref name="groupRow"/> of KV head <paramref name="kvHead"/>'s GQA group for query token
    /// <paramref name="token"/>: the head index into [q, num_query_heads] (times <see cref="HeadDim"/> for the float offset
    /// into [q, num_query_heads, head_dim]). Group rows are numbered token-major: row r = t·GroupSize + g.
    /// </summary>
    public long QueryHead(int token, int kvHead, int groupRow) => ((long)token * NumQueryHeads) + ((long)kvHead * GroupSize) + groupRow;

    /// <summary>The query vector of group row <paramref name="row"/> (= token · GroupSize + g) of KV head <paramref name="kvHead"/>.</summary>
    public ReadOnlySpan<float> GroupRow(ReadOnlySpan<float> queries, int kvHead, int row) =>
        queries.Slice((int)(QueryHead(row / GroupSize, kvHead, row % GroupSize) * HeadDim), HeadDim);

    /// <summary>Bytes of one row (one token, one KV head) of keys or of values.</summary>
    public int RowBytes => HeadDim * KvDTypeInfo.SizeOf(DType);

    /// <summary>Bytes between the first rows of two consecutive KV heads inside a block region.</summary>
    public long HeadStrideBytes => (long)BlockCapacity * RowBytes;

    /// <summary>Bytes of one block region (keys or values) for all KV heads.</summary>
    public long RegionBytes => HeadStrideBytes * NumKvHeads;

    /// <summary>Throws when the geometry cannot describe a real layer.</summary>
    public void Validate()
    {
        if (NumKvHeads <= 0 || NumQueryHeads <= 0 || NumQueryHeads % NumKvHeads != 0)
        {
            throw new ArgumentException($"num_query_heads ({NumQueryHeads}) must be a positive multiple of num_kv_heads ({NumKvHeads})");
        }

        if (HeadDim <= 0 || BlockCapacity <= 0 || !KvDTypeInfo.IsSupported(DType) || !(Scale > 0) || float.IsInfinity(Scale))
        {
            throw new ArgumentException($"invalid geometry: head_dim {HeadDim}, block {BlockCapacity}, dtype {DType}, scale {Scale}");
        }
    }
}

namespace KvDb.Core;

/// <summary>A model's attention schema; immutable once created, referenced by every context of the model.</summary>
public sealed record ModelSchema(
    string Name,
    int NumLayers,
    int NumQueryHeads,
    int NumKvHeads,
    int HeadDim,
    KvDType DType,
    int BlockSize,
    float SoftmaxScale)
{
    /// <summary>Block size used when a model declares 0.</summary>
    public const int DefaultBlockSize = 64;

    /// <summary>Largest head dimension accepted (larger heads do not exist in practice and would blow up scratch).</summary>
    public const int MaxHeadDim = 1024;

    /// <summary>Bytes of one (token, KV head) row of keys or values.</summary>
    public int RowBytes => HeadDim * KvDTypeInfo.SizeOf(DType);

    /// <summary>Bytes of one token's keys and values across all KV heads of one layer.</summary>
    public long TokenBytesPerLayer => 2L * NumKvHeads * RowBytes;

    /// <summary>Bytes of one full block (keys and values, all KV heads).</summary>
    public long BlockBytes => TokenBytesPerLayer * BlockSize;

    /// <summary>The kernel's view of one layer of this model.</summary>
    public AttentionGeometry Geometry => new(NumQueryHeads, NumKvHeads, HeadDim, BlockSize, DType, SoftmaxScale);

    /// <summary>Throws INVALID_ARGUMENT when <paramref name="layer"/> is not a layer of this model.</summary>
    public void CheckLayer(int layer)
    {
        if (layer < 0 || layer >= NumLayers)
        {
            throw KvDbException.Invalid($"layer {layer} is out of range: model \"{Name}\" has layers 0..{NumLayers - 1}");
        }
    }

    /// <summary>
    /// The one check of query vectors against the model: <paramref name="floats"/> values must be
    /// [<paramref name="numQueries"/> ≥ 1, num_query_heads, head_dim]; throws INVALID_ARGUMENT naming <paramref name="field"/> otherwise.
    /// </summary>
    public void CheckQueries(string field, long floats, long numQueries)
    {
        if (numQueries <= 0 || floats != numQueries * NumQueryHeads * HeadDim)
        {
            throw KvDbException.Invalid($"{field} must have shape [q ≥ 1, {NumQueryHeads}, {HeadDim}] for model \"{Name}\", got {floats} values for {numQueries} queries");
        }
    }

    /// <summary>Fills server defaults (block size, softmax scale) and checks every field; throws INVALID_ARGUMENT naming the bad field.</summary>
    public static ModelSchema Normalize(ModelSchema m)
    {
        if (string.IsNullOrWhiteSpace(m.Name) || m.Name.Length > 256)
        {
            throw KvDbException.Invalid("model.name must be a non-empty string of at most 256 characters, e.g. \"llama-3-8b\"");
        }

        if (m.NumLayers is <= 0 or > 4096)
        {
            throw KvDbException.Invalid($"model.num_layers must be in 1..4096, got {m.NumLayers}");
        }

        if (m.NumKvHeads is <= 0 or > 1024)
        {
            throw KvDbException.Invalid($"model.num_kv_heads must be in 1..1024, got {m.NumKvHeads}");
        }

        if (m.NumQueryHeads <= 0 || m.NumQueryHeads % m.NumKvHeads != 0)
        {
            throw KvDbException.Invalid($"model.num_query_heads must be a positive multiple of num_kv_heads ({m.NumKvHeads}), got {m.NumQueryHeads}");
        }

        if (m.HeadDim is <= 0 or > MaxHeadDim)
        {
            throw KvDbException.Invalid($"model.head_dim must be in 1..{MaxHeadDim}, got {m.HeadDim}");
        }

        if (!KvDTypeInfo.IsSupported(m.DType))
        {
            throw KvDbException.Invalid("model.dtype must be DTYPE_F32, DTYPE_F16 or DTYPE_BF16");
        }

        int block = m.BlockSize == 0 ? DefaultBlockSize : m.BlockSize;
        if (block is < 16 or > 256)
        {
            throw KvDbException.Invalid($"model.block_size must be 0 (server default {DefaultBlockSize}) or in 16..256, got {m.BlockSize}");
        }

        float scale = m.SoftmaxScale == 0 ? 1f / MathF.Sqrt(m.HeadDim) : m.SoftmaxScale;
        if (!float.IsFinite(scale) || scale <= 0)
        {
            throw KvDbException.Invalid($"model.softmax_scale must be 0 (1/sqrt(head_dim)) or a positive finite number, got {m.SoftmaxScale}");
        }

        return m with { BlockSize = block, SoftmaxScale = scale };
    }
}

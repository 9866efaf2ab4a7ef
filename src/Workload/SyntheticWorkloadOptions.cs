namespace KvDb.Workload;

/// <summary>Shape and character of a synthetic context; defaults are a Llama-3-8B-like layer.</summary>
public sealed record SyntheticWorkloadOptions
{
    /// <summary>Tokens in the context.</summary>
    public long Tokens { get; init; } = 32 * 1024;

    /// <summary>KV heads per layer.</summary>
    public int NumKvHeads { get; init; } = 8;

    /// <summary>Query heads per layer (a multiple of <see cref="NumKvHeads"/>).</summary>
    public int NumQueryHeads { get; init; } = 32;

    /// <summary>Dimensions per head.</summary>
    public int HeadDim { get; init; } = 128;

    /// <summary>Seed; the same seed gives bit-identical keys, values, queries and needles.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Rank of the key subspace (real keys are close to low rank).</summary>
    public int KeyRank { get; init; } = 16;

    /// <summary>Channels with large magnitude in every key (the per-channel outliers KV quantization papers report).</summary>
    public int OutlierChannels { get; init; } = 4;

    /// <summary>Leading tokens that draw large scores from every query (attention sinks).</summary>
    public int SinkTokens { get; init; } = 4;

    /// <summary>Planted tokens per KV head whose keys align with a direction every query carries.</summary>
    public int NeedlesPerHead { get; init; } = 4;

    /// <summary>Most recent tokens whose keys share a recency direction with the queries.</summary>
    public int RecentWindow { get; init; } = 256;

    /// <summary>Share of KV heads whose queries are weak, so their attention spreads over the whole context.</summary>
    public double DiffuseHeadFraction { get; init; } = 0.125;

    /// <summary>Layer index mixed into the seed so layers differ.</summary>
    public int Layer { get; init; }
}

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

    /// <summary>
    /// Share of KV heads (taken after the diffuse ones) whose attention has a heavy tail: every token belongs to one
    /// of <see cref="Topics"/> topics drawn Zipf-distributed, its key carries the topic's direction, and each query
    /// favours a few topics, so a query's softmax mass spreads over every token of its topics — from tens to tens of
    /// thousands of tokens depending on how common they are. 0 (the default) leaves every head as before.
    /// </summary>
    public double TopicalHeadFraction { get; init; }

    /// <summary>Topics of a topical head.</summary>
    public int Topics { get; init; } = 64;

    /// <summary>Zipf exponent of topic frequencies (topic r is drawn with weight 1/r^s).</summary>
    public double TopicZipfExponent { get; init; } = 1.1;

    /// <summary>Layer index mixed into the seed so layers differ.</summary>
    public int Layer { get; init; }
}

namespace KvDb.Index;

/// <summary>
/// The leading positions every sparse answer attends (StreamingLLM's attention sinks): models park large
/// attention mass on the first tokens whatever the query, so no index is trusted to find them.
/// </summary>
public static class AttentionSinks
{
    /// <summary>How many leading positions are sinks.</summary>
    public const int Count = 4;

    /// <summary>Sink positions of a layer of <paramref name="tokens"/> tokens: [0, min(Count, tokens)).</summary>
    public static long End(long tokens) => Math.Min(Count, tokens);
}

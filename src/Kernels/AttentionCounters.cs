namespace KvDb.Kernels;

/// <summary>What an attention kernel touched: (token, KV head) pairs scored and attended, and K/V bytes read.</summary>
public record struct AttentionCounters(long TokensScored, long TokensAttended, long BytesRead)
{
    /// <summary>Sums two counters.</summary>
    public static AttentionCounters operator +(AttentionCounters a, AttentionCounters b) =>
        new(a.TokensScored + b.TokensScored, a.TokensAttended + b.TokensAttended, a.BytesRead + b.BytesRead);

    /// <summary>Sums two counters (named alternative to +).</summary>
    public static AttentionCounters Add(AttentionCounters a, AttentionCounters b) => a + b;
}

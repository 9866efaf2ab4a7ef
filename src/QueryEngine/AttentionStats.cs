namespace KvDb.QueryEngine;

/// <summary>What answering a request cost: plan, (token, KV head) pairs scored and attended, bytes, server time, and why.</summary>
public sealed record AttentionStats(string Plan, long TokensScored, long TokensAttended, long BytesRead, double ServerMicros, string Explain);

namespace KvDb.QueryEngine;

/// <summary>
/// A partial attention answer: output f32 [q, num_query_heads, head_dim], LSE f32 [q, num_query_heads]
/// (natural log of the sum of exp of scaled scores over the selection), stats, and optionally the
/// selected positions per KV head (concatenated; <see cref="SelectionCounts"/> says how many per head).
/// </summary>
public sealed record AttentionResult(float[] Output, float[] Lse, AttentionStats Stats, long[]? Selected, int[]? SelectionCounts);

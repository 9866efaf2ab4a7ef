using KvDb.QueryEngine.Explain;

namespace KvDb.QueryEngine;

/// <summary>
/// What answering a request cost: plan, (token, KV head) pairs scored and attended, bytes, server time, and why
/// (<see cref="AttentionExplain"/>); the quality contract AUTO applied (null for other kinds) and, per (query token,
/// query head) in output order, what the answer rests on.
/// </summary>
public sealed record AttentionStats(
    string Plan,
    long TokensScored,
    long TokensAttended,
    long BytesRead,
    double ServerMicros,
    AttentionExplain Explain,
    QualityContract? Contract = null,
    IReadOnlyList<HeadQuality>? Quality = null)
{
    /// <summary>The tier the K/V bytes were read from by the kernel: "gpu" (device mirrors) or "cpu".</summary>
    public string Tier => Explain.Site == ExecutionSite.Gpu ? "gpu" : "cpu";
}

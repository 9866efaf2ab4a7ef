namespace KvDb.QueryEngine;

/// <summary>
/// One attention request after wire decoding: f32 queries [NumQueries, num_query_heads, head_dim] and a
/// half-open exclude range (empty when End ≤ Start).
/// </summary>
public sealed record AttentionQuery(
    string ContextId,
    int Layer,
    float[] Queries,
    int NumQueries,
    long ExcludeStart,
    long ExcludeEnd,
    PlanRequest Plan,
    bool ReturnSelection)
{
    /// <summary>The exclude range.</summary>
    public ExcludeRange Exclude => new(ExcludeStart, ExcludeEnd);

    /// <summary>
    /// Asked through Explain: the planner also probes the indexes of the plans it sets aside to estimate them (work
    /// that a plain Attend skips; its explain lists them by name and reason only).
    /// </summary>
    public bool Explained { get; init; }

    /// <summary>
    /// The caller's cancellation and deadline: the executor checks it between phases and heads, the exact kernel before
    /// each chunk of tokens and every 16 blocks, so an abandoned or expired query stops reading K/V.
    /// </summary>
    public Kernels.StopSignal Cancellation { get; init; }
}

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

    /// <summary>The call's cancellation (its deadline, or the client going away): stops reading demoted blocks from disk.</summary>
    public CancellationToken Cancellation { get; init; }
}

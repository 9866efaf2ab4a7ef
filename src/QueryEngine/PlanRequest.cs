namespace KvDb.QueryEngine;

/// <summary>The plan hint of a request: a kind and its budget (0 = the plan's default).</summary>
public sealed record PlanRequest(PlanKind Kind, long Budget = 0)
{
    /// <summary>The default: let the optimizer choose.</summary>
    public static PlanRequest Auto { get; } = new(PlanKind.Auto);
}

namespace KvDb.QueryEngine;

/// <summary>
/// The plan hint of a request: a kind, its budget (0 = the plan's default), DIPR's range <see cref="Beta"/> on q·k
/// (0 = the default), and AUTO's quality contract (<see cref="Quality"/>; null = the server's default).
/// </summary>
public sealed record PlanRequest(PlanKind Kind, long Budget = 0, float Beta = 0, QualityContract? Quality = null)
{
    /// <summary>The default: let the optimizer choose, under the server's default contract.</summary>
    public static PlanRequest Auto { get; } = new(PlanKind.Auto);
}

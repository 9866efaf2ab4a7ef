using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Explain;

/// <summary>
/// A plan the planner considered for a KV head and did not run: its name, its kind, why it lost, and what it would
/// have read with the cost model's microseconds for it (compare with the head's <see cref="HeadExplain.ChosenMicros"/>).
/// </summary>
/// <param name="Plan">The plan's name as stats would report it ("exact", "auto:centroid:L2", "indexed:block", …).</param>
/// <param name="Kind">The plan kind it belongs to (<see cref="PlanKind.Auto"/> for AUTO's sampled plan).</param>
/// <param name="LostBecause">Why it did not run.</param>
/// <param name="Estimated">What it would have read for this KV head; null when it could not be estimated (its index is not ready).</param>
/// <param name="EstimatedMicros">The cost model's microseconds for <paramref name="Estimated"/>'s rows (streamed for exact, gathered otherwise); NaN when unknown.</param>
public sealed record Alternative(string Plan, PlanKind Kind, LostBecause LostBecause, PlanEstimate? Estimated, double EstimatedMicros);

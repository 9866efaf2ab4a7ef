using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// A plan the planner set aside for the whole request, and why: the requested sparse kind whose index is not ready,
/// AUTO's sampled plan before its index is ready or on a layer too short for it, and the fixed-budget kinds AUTO
/// does not run under a tolerance. Each KV head's explain lists it as an <see cref="Alternative"/> with that head's
/// estimate: from <see cref="Plan"/> when the plan could be made (its indexes were ready), else
/// <see cref="Estimate"/> (what the planner compared), else none.
/// </summary>
/// <param name="Kind">The plan kind.</param>
/// <param name="Name">The plan's name as stats would report it.</param>
/// <param name="Reason">Why it did not run.</param>
/// <param name="Plan">The plan over the ready views, to estimate per KV head; null when its indexes were not ready.</param>
/// <param name="Estimate">A per-KV-head estimate the planner compared, when there is no <paramref name="Plan"/>.</param>
public sealed record SetAsidePlan(PlanKind Kind, string Name, LostBecause Reason, IAttentionPlan? Plan = null, PlanEstimate? Estimate = null)
{
    /// <summary>The alternative as KV head <paramref name="kvHead"/> saw it, priced by <paramref name="costs"/>.</summary>
    public Alternative For(LayerSnapshot layer, AttentionQuery query, int kvHead, CostModel costs)
    {
        PlanEstimate? estimate = Plan is null ? Estimate : Plan.Estimate(layer, query, kvHead);
        return new Alternative(Name, Kind, Reason, estimate, Micros(estimate, Kind == PlanKind.Exact, layer.Model.Geometry.RowBytes, costs));
    }

    /// <summary>The cost model's microseconds for an estimate's rows: streamed for exact attention, gathered otherwise; NaN without one.</summary>
    internal static double Micros(PlanEstimate? estimate, bool streamed, int rowBytes, CostModel costs) => estimate is PlanEstimate e
        ? streamed ? costs.StreamMicros(e.Rows, rowBytes) : costs.GatherMicros(e.Rows, rowBytes)
        : double.NaN;
}

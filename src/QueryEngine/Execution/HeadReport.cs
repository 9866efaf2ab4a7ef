using KvDb.Kernels;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Planning;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Execution;

/// <summary>
/// The parts of a KV head's <see cref="HeadExplain"/> that are derived from its selection rather than measured on the
/// way: what the head read, and the alternatives the planner considered for it with their estimates and why each lost.
/// Reads the planner's choices; decides nothing.
/// </summary>
internal static class HeadReport
{
    /// <summary>
    /// What KV head <paramref name="h"/> read, counted as the attend phase counts it: a computed head its own counters,
    /// a dense head <paramref name="live"/> rows, a gathered head its positions, each plus what selecting it scanned.
    /// </summary>
    public static AttentionCounters Actual(in AttentionGeometry g, int numQueries, HeadSelection h, long live)
    {
        if (h.Partial is GroupPartial partial)
        {
            return partial.Counters + new AttentionCounters(h.Scanned, 0, h.ScannedBytes);
        }

        long rows = h.IsDense ? live : h.Positions.Length;
        long pairs = rows * numQueries;
        return new AttentionCounters(pairs + h.Scanned, pairs, (rows * 2L * g.RowBytes) + h.ScannedBytes);
    }

    /// <summary>
    /// The alternatives of KV head <paramref name="kvHead"/>: under AUTO's sampled plan, exact attention where the head
    /// was sampled or the sampled plan where it was answered exactly, each with the reason its <see cref="HeadChoice"/>
    /// records; then the plans the planner set aside for the whole request (<see cref="PlanChoice.SetAside"/>).
    /// </summary>
    public static IReadOnlyList<Alternative> Alternatives(PlanChoice choice, LayerSnapshot layer, AttentionQuery query, int kvHead, HeadSelection h, PlanEstimate estimate, long live, CostModel costs)
    {
        int rowBytes = layer.Model.Geometry.RowBytes;
        var list = new List<Alternative>(choice.SetAside.Count + 2);
        if (choice.Plan is VerifiedSamplingPlan sampled)
        {
            string name = sampled.Name;
            switch (h.Choice)
            {
                case HeadChoice.Sampled or HeadChoice.HeavyOnly or HeadChoice.LatencyCapped:
                    var exact = new PlanEstimate(live, live * 2L * rowBytes);
                    list.Add(new Alternative("exact", PlanKind.Exact, LostBecause.Costlier, exact, costs.StreamMicros(live, rowBytes)));
                    if (h.Choice == HeadChoice.LatencyCapped && h.ContractRows > 0)
                    {
                        list.Add(Gathered(name, LostBecause.OverLatencyTarget, h.ContractRows, rowBytes, costs));
                    }

                    break;
                case HeadChoice.ExactBefore:
                    list.Add(new Alternative(name, PlanKind.Auto, LostBecause.NeededExactBefore, estimate, costs.GatherMicros(estimate.Rows, rowBytes)));
                    break;
                case HeadChoice.ExactCheaper:
                    list.Add(new Alternative(name, PlanKind.Auto, LostBecause.Costlier, estimate, costs.GatherMicros(estimate.Rows, rowBytes)));
                    break;
                case HeadChoice.DiffuseAfterPilot:
                    list.Add(h.ContractRows > 0
                        ? Gathered(name, LostBecause.Costlier, h.ContractRows, rowBytes, costs)
                        : new Alternative(name, PlanKind.Auto, LostBecause.Costlier, estimate, costs.GatherMicros(estimate.Rows, rowBytes)));
                    break;
            }
        }

        foreach (SetAsidePlan s in choice.SetAside)
        {
            list.Add(s.For(layer, query, kvHead, costs));
        }

        return list;
    }

    private static Alternative Gathered(string name, LostBecause reason, long rows, int rowBytes, CostModel costs) =>
        new(name, PlanKind.Auto, reason, new PlanEstimate(rows, rows * 2L * rowBytes), costs.GatherMicros(rows, rowBytes));
}

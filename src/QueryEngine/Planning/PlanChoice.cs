using KvDb.Index.Catalog;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Planning;

/// <summary>The planner's answer: the plan to run, why, and the status of every index it consulted.</summary>
public sealed record PlanChoice(IAttentionPlan Plan, PlanDecision Decision, IReadOnlyList<IndexStatus> Indexes)
{
    /// <summary>The plans set aside for the whole request and why (per-KV-head decisions are the plan's, in each head's choice).</summary>
    public IReadOnlyList<SetAsidePlan> SetAside { get; init; } = [];
}

using KvDb.Kernels;
using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Explain;

/// <summary>
/// What one KV head did: the plan that chose its tokens, what that plan expected to read, what it read to choose
/// them (<see cref="Scanned"/> key-sized vectors), attended exactly (<see cref="Attended"/> positions) and as a
/// sample (<see cref="Sampled"/>), why (<see cref="Choice"/>), the cost model's microseconds for exact attention
/// and for what ran, and the quality behind it (mean heavy mass and largest predicted error over the group's rows).
/// </summary>
/// <remarks>
/// <see cref="Estimated"/> is the estimate of the request's plan, made before the head was selected: under AUTO it is
/// the sampled plan's even where the head then went exact (its <see cref="Choice"/> says why).
/// </remarks>
public sealed record HeadExplain(
    int KvHead,
    string Plan,
    PlanEstimate Estimated,
    long Scanned,
    long Attended,
    HeadChoice Choice = HeadChoice.Planned,
    long Sampled = 0,
    double ExactMicros = 0,
    double ChosenMicros = 0,
    double MassExact = 1,
    double MaxPredictedError = 0)
{
    /// <summary>What this head read: pairs scored and attended over the query tokens, and bytes (selection and attention).</summary>
    public AttentionCounters Actual { get; init; }

    /// <summary>The bound promised on each of the group's query heads' relative L2 error: 0 exact, the contract's epsilon when sampled, −1 none (fixed-budget plans).</summary>
    public double ErrorBound { get; init; }

    /// <summary>The plans the planner considered for this head and did not run, with their estimates and why each lost.</summary>
    public IReadOnlyList<Alternative> Alternatives { get; init; } = [];
}

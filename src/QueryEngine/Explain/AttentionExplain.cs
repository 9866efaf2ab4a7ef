using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Explain;

/// <summary>
/// Why a request was answered the way it was, as data: the kind asked for, the plan that ran and the reason,
/// the state of every index consulted, the plan per KV head with its estimate and what it touched, the totals
/// estimated and measured, and where the kernels ran. <see cref="ExplainText"/> renders it for the wire's
/// <c>explain</c> string; tests and the optimizer read the record.
/// </summary>
/// <param name="Requested">The plan kind the request named.</param>
/// <param name="Plan">The plan that ran (its stats name).</param>
/// <param name="Decision">Why that plan ran.</param>
/// <param name="Layer">The layer.</param>
/// <param name="LayerTokens">Tokens of the layer when the request was answered.</param>
/// <param name="Indexes">The status of every index the planner consulted (empty for exact).</param>
/// <param name="Heads">The plan per KV head.</param>
/// <param name="Estimated">What the plan expected to read, summed over KV heads.</param>
/// <param name="Actual">What the kernels and searches counted.</param>
/// <param name="Site">Where the kernels read the K/V.</param>
/// <param name="DevicePromoted">Blocks this request had to copy to the GPU tier (0 on the CPU).</param>
/// <param name="DeviceBlocks">Blocks of the layer on the GPU tier (0 on the CPU).</param>
/// <param name="DeviceReason">Why the GPU tier did not run it (empty when it did or none applies).</param>
/// <remarks>Each <see cref="HeadExplain"/> also lists the alternatives the planner set aside for that head and why.</remarks>
public sealed record AttentionExplain(
    PlanKind Requested,
    string Plan,
    PlanDecision Decision,
    int Layer,
    long LayerTokens,
    IReadOnlyList<IndexStatus> Indexes,
    IReadOnlyList<HeadExplain> Heads,
    PlanEstimate Estimated,
    AttentionCounters Actual,
    ExecutionSite Site,
    int DevicePromoted,
    int DeviceBlocks,
    string DeviceReason)
{
    /// <summary>The quality contract AUTO answered under (after the server's defaults); null for other kinds.</summary>
    public QualityContract? Contract { get; init; }
}

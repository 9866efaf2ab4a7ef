using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Explain;

/// <summary>
/// What one KV head did: the plan that chose its tokens, what that plan expected to read, and what it read
/// to choose them (<see cref="Scanned"/> key-sized vectors) and attended (<see cref="Attended"/> positions).
/// </summary>
public sealed record HeadExplain(int KvHead, string Plan, PlanEstimate Estimated, long Scanned, long Attended);

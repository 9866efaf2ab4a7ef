using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Explain;

/// <summary>
/// What one KV head did: the plan that chose its tokens, what that plan expected to read, what it read to choose
/// them (<see cref="Scanned"/> key-sized vectors), attended exactly (<see cref="Attended"/> positions) and as a
/// sample (<see cref="Sampled"/>), why (<see cref="Choice"/>), the cost model's microseconds for exact attention
/// and for what ran, and the quality behind it (mean heavy mass and largest predicted error over the group's rows).
/// </summary>
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
    double MaxPredictedError = 0);

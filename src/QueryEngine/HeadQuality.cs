namespace KvDb.QueryEngine;

/// <summary>
/// What one query head's partial output rests on: the plan that answered it, the estimated share of softmax mass in
/// the exactly attended tokens, the promised bound on its relative L2 error (0 = exact; −1 = none, for fixed-budget
/// plans) and the estimator's (1 − δ)-quantile of that error at the sample size used, and the tokens behind it.
/// </summary>
public readonly record struct HeadQuality(
    int Query,
    int QueryHead,
    int KvHead,
    string Plan,
    double MassExact,
    double ErrorBound,
    double PredictedError,
    long TokensExact,
    long TokensSampled,
    long TokensResidual)
{
    /// <summary>A head answered exactly over <paramref name="tokens"/> tokens.</summary>
    public static HeadQuality Exact(int query, int queryHead, int kvHead, long tokens) =>
        new(query, queryHead, kvHead, "exact", 1, 0, 0, tokens, 0, 0);

    /// <summary>A head answered by a fixed-budget plan: no estimate, no bound.</summary>
    public static HeadQuality Unbounded(int query, int queryHead, int kvHead, string plan, long tokens) =>
        new(query, queryHead, kvHead, plan, -1, -1, -1, tokens, 0, 0);
}

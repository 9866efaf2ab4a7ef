namespace KvDb.QueryEngine.Explain;

/// <summary>Why the planner did not run an <see cref="Alternative"/> it considered for a KV head.</summary>
public enum LostBecause
{
    /// <summary>
    /// The cost model put it at or above what ran, by the comparison the planner made (AUTO: exact attention against
    /// the sampled plan's estimate before the pilot, or the sample the contract needs after it; a layer so short that
    /// exact attention costs less than the smallest sampled answer).
    /// </summary>
    Costlier = 0,

    /// <summary>An index it searches is not ready yet (absent, or being built in the background).</summary>
    IndexNotReady = 1,

    /// <summary>Building an index it searches failed (the next request retries).</summary>
    IndexFailed = 2,

    /// <summary>The executor has no index catalog, so no plan that searches an index can run.</summary>
    NoCatalog = 3,

    /// <summary>A fixed-budget plan (the top-k families, LSH sampling, DIPR): it gives no bound on its error, and the request carries a tolerance.</summary>
    NoQualityGuarantee = 4,

    /// <summary>AUTO: the KV head needed exact attention in its recent queries (head statistics), so sampling was not tried.</summary>
    NeededExactBefore = 5,

    /// <summary>AUTO: the sample the contract needs did not fit the request's max_latency_us; a smaller sample ran.</summary>
    OverLatencyTarget = 6,
}

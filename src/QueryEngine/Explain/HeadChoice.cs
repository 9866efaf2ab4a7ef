namespace KvDb.QueryEngine.Explain;

/// <summary>Why a KV head was answered the way it was.</summary>
public enum HeadChoice
{
    /// <summary>The requested plan's selection (no per-head decision).</summary>
    Planned = 0,

    /// <summary>AUTO: heavy hitters exact plus a uniform sample of the rest were estimated cheaper than exact and met the contract.</summary>
    Sampled = 1,

    /// <summary>AUTO: the heavy hitters were every token outside the exclude range: nothing left to estimate.</summary>
    HeavyOnly = 2,

    /// <summary>AUTO: the pilot sample showed diffuse attention; the contract needed a sample costing more than exact attention.</summary>
    DiffuseAfterPilot = 3,

    /// <summary>AUTO: this head needed exact attention in its recent queries (head statistics); answered exactly without a pilot.</summary>
    ExactBefore = 4,

    /// <summary>AUTO: the cost model put exact attention below heavy hitters plus the smallest sample (a short layer).</summary>
    ExactCheaper = 5,

    /// <summary>AUTO: the contract needed more sample than max_latency_us allowed; the reported bound is the wider one reached.</summary>
    LatencyCapped = 6,
}

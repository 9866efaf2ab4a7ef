namespace KvDb.QueryEngine.Explain;

/// <summary>Why the planner ran the plan it ran.</summary>
public enum PlanDecision
{
    /// <summary>The request named the plan's kind and everything it needs was ready.</summary>
    Requested = 0,

    /// <summary>AUTO (or an unset kind): exact for now; the cost-based optimizer will choose here.</summary>
    AutoExact = 1,

    /// <summary>A sparse kind was asked for but an index it needs is not ready yet: exact meanwhile.</summary>
    IndexNotReady = 2,

    /// <summary>A sparse kind was asked for but building an index it needs failed (it is retried): exact meanwhile.</summary>
    IndexFailed = 3,

    /// <summary>A sparse kind was asked for but the executor has no index catalog: exact.</summary>
    NoCatalog = 4,

    /// <summary>AUTO chose heavy hitters plus a verified sample (each KV head may still be answered exactly: see its choice).</summary>
    AutoSampled = 5,

    /// <summary>AUTO: the layer is so short that exact attention costs less than the smallest sampled plan.</summary>
    AutoExactCheaper = 6,
}

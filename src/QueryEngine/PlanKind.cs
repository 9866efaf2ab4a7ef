namespace KvDb.QueryEngine;

/// <summary>How a request wants its tokens chosen; numbering matches kvdb.v1.PlanKind.</summary>
public enum PlanKind
{
    /// <summary>Unset: treated as <see cref="Auto"/>.</summary>
    Unspecified = 0,
    /// <summary>The optimizer picks (for now: exact; the cost-based optimizer plugs in at the planner).</summary>
    Auto = 1,
    /// <summary>Every stored token outside the exclude range.</summary>
    Exact = 2,
    /// <summary>Quest block summaries: the blocks with the highest q·k upper bound (IndexedPlan over "block").</summary>
    BlockTopK = 3,
    /// <summary>Hierarchical centroids: members of the best clusters, rescored exactly (IndexedPlan over "centroid:L2").</summary>
    CentroidTopK = 4,
    /// <summary>SimHash LSH: keys colliding most often with the query (IndexedPlan over "lsh").</summary>
    LshTopK = 5,
    /// <summary>Attention-aware ANN graph top-k (IndexedPlan over "graph").</summary>
    AnnTopK = 6,
    /// <summary>MagicPIG importance sampling over SimHash LSH, heavy hitters (LSH collision-count top 1%) exact (LshSamplingPlan).</summary>
    LshSampling = 7,

    /// <summary>DIPR: every token whose q·k is within <see cref="PlanRequest.Beta"/> of the KV head's best, for each query row.</summary>
    Dipr = 8,
}

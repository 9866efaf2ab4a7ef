namespace KvDb.QueryEngine.Plans;

/// <summary>
/// What a plan expects to read before it runs: <see cref="Rows"/> (token, KV head) rows whose K and V it
/// attends, and <see cref="Bytes"/> it reads in all (those rows' K/V plus what finding them reads: index
/// structures, keys rescored). Exact for the exact plan; an expectation for sparse ones.
/// </summary>
public readonly record struct PlanEstimate(long Rows, long Bytes)
{
    /// <summary>Adds two estimates (e.g. of two KV heads).</summary>
    public static PlanEstimate operator +(PlanEstimate a, PlanEstimate b) => new(a.Rows + b.Rows, a.Bytes + b.Bytes);

    /// <summary>Adds two estimates.</summary>
    public static PlanEstimate Add(PlanEstimate a, PlanEstimate b) => a + b;
}

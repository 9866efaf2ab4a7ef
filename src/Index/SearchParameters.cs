namespace KvDb.Index;

/// <summary>
/// Knobs of one search. <see cref="Budget"/> is the number of positions to return (tokens the plan will
/// attend); <see cref="ScanBudget"/> caps the keys a search may score exactly (0 = the family's default);
/// <see cref="Effort"/> is a family-specific breadth knob (HNSW efSearch, IVF nprobe, graph beam width; 0 = default).
/// </summary>
public readonly record struct SearchParameters(int Budget, int ScanBudget = 0, int Effort = 0)
{
    /// <summary>Default budget for a context of <paramref name="tokens"/> keys: 2% of them, at least 64.</summary>
    public static SearchParameters ForTokens(long tokens) => new((int)Math.Min(tokens, Math.Max(64, (tokens + 49) / 50)));
}

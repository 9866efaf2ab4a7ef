namespace KvDb.Index;

/// <summary>Convenience forms of <see cref="IKeyIndex"/> calls.</summary>
public static class KeyIndexExtensions
{
    /// <summary>Candidates for <paramref name="query"/> within <paramref name="budget"/> positions, family defaults otherwise.</summary>
    public static int Candidates(this IKeyIndex index, ReadOnlySpan<float> query, int budget, Span<long> positions) =>
        index.Candidates(query, new SearchParameters(budget), positions, out _);
}

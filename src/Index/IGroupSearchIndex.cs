namespace KvDb.Index;

/// <summary>
/// An index that answers several queries in one pass over its structure (the query rows of a GQA group share one
/// KV head's index): each row gets exactly what <see cref="IKeyIndex.Candidates"/> would give it, while the index is
/// read once instead of once per row.
/// </summary>
public interface IGroupSearchIndex : IKeyIndex
{
    /// <summary>
    /// For <paramref name="rows"/> queries [rows, Dimension], writes row r's candidates to
    /// positions[r·stride .. r·stride + counts[r]) with stride = positions.Length / rows, at most
    /// min(parameters.Budget, stride) each; <paramref name="stats"/> says what the one pass touched.
    /// </summary>
    void CandidatesForRows(ReadOnlySpan<float> queries, int rows, in SearchParameters parameters, Span<long> positions, Span<int> counts, out SearchStats stats);
}

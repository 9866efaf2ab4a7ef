namespace KvDb.Index;

/// <summary>
/// An index over the keys of one (layer, KV head): it is built from f32 key rows with their sequence
/// positions, grows with <see cref="Extend"/>, and answers "which positions should this query attend,
/// within this budget". Candidates may be called from many threads at once; Build, Extend and Save may not
/// run concurrently with anything else.
/// </summary>
public interface IKeyIndex : IDisposable
{
    /// <summary>Canonical spec string this index was created from, e.g. "lsh:K=10,L=150,T=2".</summary>
    string Spec { get; }

    /// <summary>Dimensions of every key and query.</summary>
    int Dimension { get; }

    /// <summary>Keys indexed.</summary>
    int Count { get; }

    /// <summary>Bytes the index holds (managed and native), copies of keys included.</summary>
    long MemoryBytes { get; }

    /// <summary>Replaces the index content with <paramref name="keys"/> [n, Dimension] at <paramref name="positions"/> [n].</summary>
    void Build(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions);

    /// <summary>Adds keys after the ones already indexed (positions need not be contiguous, but should ascend).</summary>
    void Extend(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions);

    /// <summary>
    /// Writes at most min(parameters.Budget, positions.Length) candidate positions for <paramref name="query"/>
    /// (best first where the family ranks them) and returns how many; <paramref name="stats"/> says what the search touched.
    /// </summary>
    int Candidates(ReadOnlySpan<float> query, in SearchParameters parameters, Span<long> positions, out SearchStats stats);

    /// <summary>Writes the index (header and content) so <see cref="IndexFactory.Load"/> restores it exactly.</summary>
    void Save(Stream stream);
}

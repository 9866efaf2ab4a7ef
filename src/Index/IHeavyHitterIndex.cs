namespace KvDb.Index;

/// <summary>
/// An index that names the keys likely to be heavy for a group of query rows without scoring keys: a cheap
/// guess, not a ranking. AUTO attends what it names exactly and estimates the rest of the layer from a uniform
/// sample, so a key it misses costs sample size, never correctness; a key it names needlessly costs one row read.
/// </summary>
public interface IHeavyHitterIndex : IKeyIndex
{
    /// <summary>The most positions <see cref="HeavyHitters"/> writes for <paramref name="rowCount"/> rows of <paramref name="perRow"/>.</summary>
    int MaxHeavyHitters(int rowCount, int perRow);

    /// <summary>
    /// Writes positions of keys likely heavy for any of <paramref name="rows"/> [rowCount, dimension] — about
    /// <paramref name="perRow"/> per row, unsorted and possibly repeated — and returns how many.
    /// </summary>
    int HeavyHitters(ReadOnlySpan<float> rows, int rowCount, int perRow, Span<long> positions, out SearchStats stats);
}

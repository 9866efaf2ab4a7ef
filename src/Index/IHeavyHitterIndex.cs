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

    /// <summary>
    /// As <see cref="HeavyHitters(ReadOnlySpan{float}, int, int, Span{long}, out SearchStats)"/>, also writing for each
    /// position the row it was named for (<paramref name="namedFor"/>; −1 where named for every row) and how strongly
    /// (<paramref name="ranks"/>: larger first, comparable across indexes of the same family and dimension; +∞ for
    /// keys named for every row), so that a caller searching several segments can keep the best across them. Keys
    /// the index always names (outliers) may be named per row here, ranked like the rest.
    /// </summary>
    int HeavyHitters(ReadOnlySpan<float> rows, int rowCount, int perRow, Span<long> positions, Span<int> namedFor, Span<float> ranks, out SearchStats stats);
}

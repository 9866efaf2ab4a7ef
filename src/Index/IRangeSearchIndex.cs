namespace KvDb.Index;

/// <summary>
/// An index that answers a score-threshold question instead of a top-k one: every key whose q·k may reach a
/// threshold (DIPR-style dynamic selection: attend what matters, however many that is). The answer is a superset:
/// no key with q·k ≥ threshold is ever missing from it.
/// </summary>
public interface IRangeSearchIndex : IKeyIndex
{
    /// <summary>
    /// Writes the positions of every key that may have q·k ≥ <paramref name="threshold"/> (all keys with a larger
    /// score included; some below it may be too) to <paramref name="positions"/>, at most its length, and returns how
    /// many were written; <paramref name="total"/> says how many qualified (more than written when the span was short).
    /// </summary>
    int AtLeast(ReadOnlySpan<float> query, float threshold, Span<long> positions, out int total, out SearchStats stats);

    /// <summary>
    /// <see cref="AtLeast"/> for <paramref name="rows"/> queries [rows, Dimension] at once, each with its own threshold
    /// (<paramref name="thresholds"/>[r]): writes every key that may reach some row's threshold, each once, at most
    /// the span's length, and returns how many were written; <paramref name="total"/> says how many qualified. The
    /// rows of a GQA group share their KV head's index, so one pass over it serves them all.
    /// </summary>
    int AtLeastForRows(ReadOnlySpan<float> queries, int rows, ReadOnlySpan<float> thresholds, Span<long> positions, out int total, out SearchStats stats);
}

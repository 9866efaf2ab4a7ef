using System.Buffers;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// DIPR's filter, fed exact scores chunk by chunk: for each query row of a GQA group, the best q·k seen so far and
/// every position within β of it. The best only grows, so a position below the running best − β can never qualify
/// and is dropped as it arrives; what was kept is cut back to the final best − β by <see cref="Union"/>. What it
/// holds is therefore about the answer's size, not the layer's, whatever order the keys arrive in. Excluded
/// positions neither count towards the best nor are kept. Buffers come from the array pools and go back on Dispose.
/// </summary>
internal sealed class RowRanges : IDisposable
{
    private const int InitialCapacity = 256;

    private readonly float _beta;
    private readonly ExcludeRange _exclude;
    private readonly float[] _best;
    private readonly long[][] _positions;
    private readonly float[][] _scores;
    private readonly int[] _counts;

    /// <summary>Starts <paramref name="rows"/> empty rows keeping scores ≥ best − <paramref name="beta"/> outside <paramref name="exclude"/>.</summary>
    public RowRanges(int rows, float beta, ExcludeRange exclude)
    {
        _beta = beta;
        _exclude = exclude;
        _best = new float[rows];
        _positions = new long[rows][];
        _scores = new float[rows][];
        _counts = new int[rows];
        Array.Fill(_best, float.NegativeInfinity);
        for (int r = 0; r < rows; r++)
        {
            _positions[r] = ArrayPool<long>.Shared.Rent(InitialCapacity);
            _scores[r] = ArrayPool<float>.Shared.Rent(InitialCapacity);
        }
    }

    /// <summary>The best score row <paramref name="row"/> has seen (−∞ before any).</summary>
    public float Best(int row) => _best[row];

    /// <summary>Feeds row <paramref name="row"/> the exact <paramref name="scores"/> of <paramref name="positions"/>.</summary>
    public void Add(int row, ReadOnlySpan<long> positions, ReadOnlySpan<float> scores)
    {
        // The chunk's own best first, so its early positions are judged against it and not kept only to be dropped.
        float best = _best[row];
        for (int i = 0; i < positions.Length; i++)
        {
            if (scores[i] > best && !_exclude.Contains(positions[i]))
            {
                best = scores[i];
            }
        }

        _best[row] = best;
        float threshold = best - _beta;
        for (int i = 0; i < positions.Length; i++)
        {
            if (scores[i] >= threshold && !_exclude.Contains(positions[i]))
            {
                Append(row, positions[i], scores[i]);
            }
        }
    }

    /// <summary>
    /// The ascending distinct union over rows of every position within β of its row's best, plus the sinks
    /// [0, <paramref name="sinks"/>), within [0, <paramref name="tokens"/>) and outside the exclude range.
    /// </summary>
    public long[] Union(long sinks, long tokens)
    {
        long total = sinks;
        for (int r = 0; r < _counts.Length; r++)
        {
            Compact(r);
            total += _counts[r];
        }

        long[] all = ArrayPool<long>.Shared.Rent((int)Math.Min(int.MaxValue - 64, Math.Max(1, total)));
        try
        {
            int n = 0;
            for (int r = 0; r < _counts.Length; r++)
            {
                _positions[r].AsSpan(0, _counts[r]).CopyTo(all.AsSpan(n));
                n += _counts[r];
            }

            for (long p = 0; p < sinks; p++)
            {
                all[n++] = p;
            }

            return IndexedPlan.SortedDistinct(all.AsSpan(0, n), tokens, _exclude);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(all);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        for (int r = 0; r < _counts.Length; r++)
        {
            ArrayPool<long>.Shared.Return(_positions[r]);
            ArrayPool<float>.Shared.Return(_scores[r]);
        }
    }

    private void Append(int row, long position, float score)
    {
        if (_counts[row] == _positions[row].Length)
        {
            // Drop what the risen best has ruled out; grow only when that frees less than half.
            Compact(row);
            if (_counts[row] > _positions[row].Length / 2)
            {
                Grow(row);
            }
        }

        _positions[row][_counts[row]] = position;
        _scores[row][_counts[row]] = score;
        _counts[row]++;
    }

    /// <summary>Keeps only row <paramref name="row"/>'s entries at or above its current best − β.</summary>
    private void Compact(int row)
    {
        float threshold = _best[row] - _beta;
        long[] positions = _positions[row];
        float[] scores = _scores[row];
        int kept = 0;
        for (int i = 0; i < _counts[row]; i++)
        {
            if (scores[i] >= threshold)
            {
                positions[kept] = positions[i];
                scores[kept] = scores[i];
                kept++;
            }
        }

        _counts[row] = kept;
    }

    private void Grow(int row)
    {
        int size = (int)Math.Min(int.MaxValue - 64, 2L * _positions[row].Length);
        long[] positions = ArrayPool<long>.Shared.Rent(size);
        float[] scores = ArrayPool<float>.Shared.Rent(size);
        _positions[row].AsSpan(0, _counts[row]).CopyTo(positions);
        _scores[row].AsSpan(0, _counts[row]).CopyTo(scores);
        ArrayPool<long>.Shared.Return(_positions[row]);
        ArrayPool<float>.Shared.Return(_scores[row]);
        _positions[row] = positions;
        _scores[row] = scores;
    }
}

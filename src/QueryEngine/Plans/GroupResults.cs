using System.Buffers;
using KvDb.Index;
using KvDb.Index.Catalog;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// The candidates of every query row of one KV head's GQA group, searched in one pass per segment
/// (<see cref="IGroupSearchIndex"/>): each row gets what its own search would give, while each index is read once
/// for the group instead of once per row. Buffers come from the array pools and go back on Dispose.
/// </summary>
internal sealed class GroupResults : IDisposable
{
    /// <summary>Above this many buffered positions the plan searches row by row instead (huge budgets).</summary>
    private const long MaxBuffered = 1 << 20;

    private readonly long[] _positions; // [segments, rows, stride]
    private readonly int[] _counts;     // [segments, rows]
    private readonly int _rows;
    private readonly int _stride;

    private GroupResults(int segments, int rows, int stride)
    {
        _rows = rows;
        _stride = stride;
        _positions = ArrayPool<long>.Shared.Rent(segments * rows * stride);
        _counts = ArrayPool<int>.Shared.Rent(segments * rows);
    }

    /// <summary>
    /// Searches every segment's index of <paramref name="kvHead"/> once for all the group's rows; null when a segment's
    /// family cannot search a group, the group is one row, or the buffers would be too large (search row by row then).
    /// </summary>
    public static GroupResults? Search(LayerIndexes indexes, AttentionGeometry g, AttentionQuery query, int kvHead, SearchParameters parameters, int perSegment, ref long scanned)
    {
        int rows = query.NumQueries * g.GroupSize;
        int segments = indexes.Segments.Count;
        if (rows < 2 || segments == 0 || (long)segments * rows * perSegment > MaxBuffered)
        {
            return null;
        }

        foreach (IndexSegment segment in indexes.Segments)
        {
            if (segment[kvHead] is not IGroupSearchIndex)
            {
                return null;
            }
        }

        int d = g.HeadDim;
        float[] queries = ArrayPool<float>.Shared.Rent(rows * d);
        var result = new GroupResults(segments, rows, perSegment);
        try
        {
            for (int r = 0; r < rows; r++)
            {
                g.GroupRow(query.Queries, kvHead, r).CopyTo(queries.AsSpan(r * d, d));
            }

            for (int s = 0; s < segments; s++)
            {
                var index = (IGroupSearchIndex)indexes.Segments[s][kvHead];
                index.CandidatesForRows(queries.AsSpan(0, rows * d), rows, parameters, result._positions.AsSpan(s * rows * perSegment, rows * perSegment), result._counts.AsSpan(s * rows, rows), out SearchStats stats);
                scanned += stats.VectorsScanned;
            }

            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(queries);
        }
    }

    /// <summary>Copies row <paramref name="row"/>'s candidates from segment <paramref name="segment"/> into <paramref name="into"/>; returns how many.</summary>
    public int CopyRow(int segment, int row, Span<long> into)
    {
        int at = (segment * _rows) + row;
        int n = Math.Min(_counts[at], into.Length);
        _positions.AsSpan(at * _stride, n).CopyTo(into);
        return n;
    }

    /// <summary>Returns the buffers to the pools.</summary>
    public void Dispose()
    {
        ArrayPool<long>.Shared.Return(_positions);
        ArrayPool<int>.Shared.Return(_counts);
    }
}

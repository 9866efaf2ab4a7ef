using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// Quest's upper bound of q·k over a box of keys: Σ_d max(q_d·min_d, q_d·max_d), for several query rows against many
/// boxes in one pass, so each box's min and max are read once for all rows (a GQA group searches one index once).
/// </summary>
public static class BoxBoundKernel
{
    /// <summary>
    /// bounds[r·boxes + b] = Σ_d max(q_r,d·min_b,d, q_r,d·max_b,d) for <paramref name="queries"/> [rows, d] and boxes
    /// <paramref name="mins"/>, <paramref name="maxs"/> [boxes, d]; <paramref name="bounds"/> is [rows, boxes].
    /// </summary>
    public static void Bounds(ReadOnlySpan<float> queries, int rows, ReadOnlySpan<float> mins, ReadOnlySpan<float> maxs, int boxes, Span<float> bounds)
    {
        int d = rows > 0 ? queries.Length / rows : 0;
        if (rows <= 0 || d == 0 || queries.Length != rows * d || mins.Length < (long)boxes * d || maxs.Length < (long)boxes * d || bounds.Length < (long)rows * boxes)
        {
            throw new ArgumentException($"need queries [rows, d], mins and maxs [{boxes}, d] and bounds [rows, {boxes}]");
        }

        for (int b = 0; b < boxes; b++)
        {
            ReadOnlySpan<float> lo = mins.Slice(b * d, d);
            ReadOnlySpan<float> hi = maxs.Slice(b * d, d);
            for (int r = 0; r < rows; r++)
            {
                bounds[(r * boxes) + b] = Bound(queries.Slice(r * d, d), lo, hi);
            }
        }
    }

    /// <summary>Σ_d max(q_d·lo_d, q_d·hi_d): eight lanes at a time, then the remainder.</summary>
    private static float Bound(ReadOnlySpan<float> q, ReadOnlySpan<float> lo, ReadOnlySpan<float> hi)
    {
        int d = q.Length;
        int i = 0;
        float total = 0;
        if (Vector256.IsHardwareAccelerated && d >= Vector256<float>.Count)
        {
            Vector256<float> acc = Vector256<float>.Zero;
            for (; i <= d - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                Vector256<float> qv = Vector256.Create(q.Slice(i, Vector256<float>.Count));
                acc += Vector256.Max(qv * Vector256.Create(lo.Slice(i, Vector256<float>.Count)), qv * Vector256.Create(hi.Slice(i, Vector256<float>.Count)));
            }

            total = Vector256.Sum(acc);
        }

        for (; i < d; i++)
        {
            total += MathF.Max(q[i] * lo[i], q[i] * hi[i]);
        }

        return total;
    }
}

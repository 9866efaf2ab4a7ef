using System.Numerics.Tensors;

namespace KvDb.Kernels;

/// <summary>
/// Exact attention over a chosen list of token rows (a sparse plan's selection) instead of every row:
/// rows are gathered in chunks into f32 scratch, scored against all query rows of the GQA group, and
/// folded into an online softmax, so the result matches <see cref="ExactAttentionKernel"/> restricted to
/// the list. An optional per-row log-weight is added to each scaled score: importance sampling
/// (MagicPIG) passes −log p(sampled) so the weighted sums estimate the full softmax.
/// </summary>
public static unsafe class GatheredAttentionKernel
{
    /// <summary>Rows gathered per pass: enough to amortize the score loop, small enough to stay in L1/L2.</summary>
    private const int Chunk = 64;

    /// <summary>Mean rows per contiguous run below which gathering into chunks beats the run-by-run fused loops.</summary>
    private const int MinMeanRun = 4;

    [ThreadStatic]
    private static List<KvRowRun>? t_runs;

    /// <summary>
    /// Attention of the query heads served by <paramref name="kvHead"/> over the rows at
    /// <paramref name="positions"/> of that KV head. <paramref name="queries"/> is the whole request,
    /// f32 [numQueries, NumQueryHeads, HeadDim]; <paramref name="output"/> and <paramref name="lse"/> have
    /// the shapes <see cref="ExactAttentionKernel"/> uses, and only the group's heads are written.
    /// <paramref name="logWeights"/> is empty or [numQueries × GroupSize, positions.Length].
    /// </summary>
    public static AttentionCounters Run(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        int kvHead,
        ReadOnlySpan<long> positions,
        ReadOnlySpan<float> queries,
        int numQueries,
        ReadOnlySpan<float> logWeights,
        Span<float> output,
        Span<float> lse)
    {
        geometry.Validate();
        int hq = geometry.NumQueryHeads;
        int d = geometry.HeadDim;
        int group = geometry.GroupSize;
        int rows = numQueries * group;
        int n = positions.Length;
        if ((uint)kvHead >= (uint)geometry.NumKvHeads || numQueries <= 0 || queries.Length != (long)numQueries * hq * d)
        {
            throw new ArgumentException($"need kvHead in [0, {geometry.NumKvHeads}) and queries of {numQueries}×{hq}×{d} floats");
        }

        if (output.Length != queries.Length || lse.Length != numQueries * hq || (!logWeights.IsEmpty && logWeights.Length != (long)rows * n))
        {
            throw new ArgumentException("output must match queries, lse must hold numQueries × NumQueryHeads, logWeights must be empty or [rows, positions]");
        }

        // Without importance weights, ascending positions read as contiguous runs through the fused exact loops —
        // when runs are long enough to pay for each run's setup; scattered rows (samples, heavy hitters) are gathered
        // into chunks instead.
        if (logWeights.IsEmpty)
        {
            List<KvRowRun> runs = t_runs ??= [];
            runs.Clear();
            if (KvRowRun.TryFromPositions(blocks, positions, runs) && (long)runs.Count * MinMeanRun <= n)
            {
                return ExactAttentionKernel.RunSelectedHead(geometry, blocks, kvHead, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(runs), queries, numQueries, output, lse);
            }
        }

        long need = 2L * rows * d + 2L * rows + (long)rows * Chunk + 2L * Chunk * d;
        float* q = AttentionScratch.Current.Ensure(need);
        float* acc = q + (long)rows * d;
        float* max = acc + (long)rows * d;
        float* sum = max + rows;
        float* scores = sum + rows;
        float* kBuf = scores + (long)rows * Chunk;
        float* vBuf = kBuf + (long)Chunk * d;
        fixed (float* pQueries = queries)
        fixed (float* pBias = logWeights)
        {
            for (int t = 0; t < numQueries; t++)
            {
                for (int gi = 0; gi < group; gi++)
                {
                    var src = new ReadOnlySpan<float>(pQueries + (geometry.QueryHead(t, kvHead, gi) * d), d);
                    TensorPrimitives.Multiply(src, geometry.Scale, new Span<float>(q + (long)(t * group + gi) * d, d));
                }
            }

            Reset(acc, max, sum, rows, d);
            int elemSize = KvDTypeInfo.SizeOf(geometry.DType);
            int rowBytes = geometry.RowBytes;
            long headOffset = kvHead * geometry.HeadStrideBytes;
            int hint = 0;
            byte** keyRows = stackalloc byte*[Chunk];
            byte** valueRows = stackalloc byte*[Chunk];
            for (int start = 0; start < n; start += Chunk)
            {
                int count = Math.Min(Chunk, n - start);
                for (int j = 0; j < count; j++)
                {
                    long pos = positions[start + j];
                    hint = FindBlock(blocks, pos, geometry.BlockCapacity, hint);
                    KvBlockRef b = blocks[hint];
                    long offset = headOffset + (pos - b.Start) * rowBytes;
                    keyRows[j] = (byte*)(b.Keys + (nint)offset);
                    valueRows[j] = (byte*)(b.Values + (nint)offset);
                    if (j < RowPrefetch.Distance)
                    {
                        RowPrefetch.Row(keyRows[j], rowBytes);
                        RowPrefetch.Row(valueRows[j], rowBytes);
                    }
                }

                for (int j = 0; j < count; j++)
                {
                    if (j + RowPrefetch.Distance < count)
                    {
                        RowPrefetch.Row(keyRows[j + RowPrefetch.Distance], rowBytes);
                        RowPrefetch.Row(valueRows[j + RowPrefetch.Distance], rowBytes);
                    }

                    ElementConversion.ToSingle(geometry.DType, new ReadOnlySpan<byte>(keyRows[j], d * elemSize), new Span<float>(kBuf + (long)j * d, d));
                    ElementConversion.ToSingle(geometry.DType, new ReadOnlySpan<byte>(valueRows[j], d * elemSize), new Span<float>(vBuf + (long)j * d, d));
                }

                Accumulate(q, rows, d, kBuf, vBuf, count, pBias == null ? null : pBias + start, n, acc, max, sum, scores);
            }

            for (int t = 0; t < numQueries; t++)
            {
                for (int gi = 0; gi < group; gi++)
                {
                    long head = geometry.QueryHead(t, kvHead, gi);
                    Finish(acc, max, sum, t * group + gi, d, output.Slice((int)(head * d), d), out lse[(int)head]);
                }
            }
        }

        long pairs = (long)n * numQueries;
        return new AttentionCounters(pairs, pairs, 2L * n * geometry.RowBytes);
    }

    /// <summary>
    /// Attention of one query over f32 rows: keys and values [*, dim], the attended row indices, and
    /// optional log-weights [rows.Length]. Scores are scale · q·k + logWeight.
    /// </summary>
    public static void RunRows(
        ReadOnlySpan<float> query,
        float scale,
        ReadOnlySpan<float> keys,
        ReadOnlySpan<float> values,
        ReadOnlySpan<int> rows,
        ReadOnlySpan<float> logWeights,
        Span<float> output,
        out float lse)
    {
        int d = query.Length;
        int n = rows.Length;
        if (d == 0 || output.Length != d || keys.Length != values.Length || keys.Length % d != 0 || (!logWeights.IsEmpty && logWeights.Length != n))
        {
            throw new ArgumentException("keys and values must be [*, dim], output [dim], logWeights empty or one per row");
        }

        long rowCount = keys.Length / d;
        long need = 2L * d + 2 + Chunk + 2L * Chunk * d;
        float* q = AttentionScratch.Current.Ensure(need);
        float* acc = q + d;
        float* max = acc + d;
        float* sum = max + 1;
        float* scores = sum + 1;
        float* kBuf = scores + Chunk;
        float* vBuf = kBuf + (long)Chunk * d;
        TensorPrimitives.Multiply(query, scale, new Span<float>(q, d));
        Reset(acc, max, sum, 1, d);
        fixed (float* pKeys = keys)
        fixed (float* pValues = values)
        fixed (float* pBias = logWeights)
        {
            for (int start = 0; start < n; start += Chunk)
            {
                int count = Math.Min(Chunk, n - start);
                for (int j = 0; j < count; j++)
                {
                    int row = rows[start + j];
                    if ((ulong)row >= (ulong)rowCount)
                    {
                        throw new ArgumentOutOfRangeException(nameof(rows), row, $"row index must be in [0, {rowCount})");
                    }

                    Buffer.MemoryCopy(pKeys + (long)row * d, kBuf + (long)j * d, d * sizeof(float), d * sizeof(float));
                    Buffer.MemoryCopy(pValues + (long)row * d, vBuf + (long)j * d, d * sizeof(float), d * sizeof(float));
                }

                Accumulate(q, 1, d, kBuf, vBuf, count, pBias == null ? null : pBias + start, n, acc, max, sum, scores);
            }
        }

        Finish(acc, max, sum, 0, d, output, out lse);
    }

    /// <summary>Index of the block holding <paramref name="position"/>; tries the caller's hint and the full-block guess before a binary search.</summary>
    private static int FindBlock(ReadOnlySpan<KvBlockRef> blocks, long position, int capacity, int hint)
    {
        if (hint < blocks.Length && Contains(blocks[hint], position))
        {
            return hint;
        }

        long guess = position / capacity;
        if (guess < blocks.Length && Contains(blocks[(int)guess], position))
        {
            return (int)guess;
        }

        int lo = 0;
        int hi = blocks.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            KvBlockRef b = blocks[mid];
            if (position < b.Start)
            {
                hi = mid - 1;
            }
            else if (position >= b.Start + b.Tokens)
            {
                lo = mid + 1;
            }
            else
            {
                return mid;
            }
        }

        throw new ArgumentOutOfRangeException(nameof(position), position, "position is not stored in any block of the layer");
    }

    private static bool Contains(in KvBlockRef b, long position) => position >= b.Start && position < b.Start + b.Tokens;

    private static void Reset(float* acc, float* max, float* sum, int rows, int d)
    {
        new Span<float>(acc, rows * d).Clear();
        new Span<float>(max, rows).Fill(float.NegativeInfinity);
        new Span<float>(sum, rows).Clear();
    }

    /// <summary>Folds <paramref name="count"/> gathered rows into the running softmax of every query row.</summary>
    private static void Accumulate(float* q, int rows, int d, float* k, float* v, int count, float* bias, int biasStride, float* acc, float* max, float* sum, float* scores)
    {
        for (int r = 0; r < rows; r++)
        {
            float* sr = scores + (long)r * count;
            for (int j = 0; j < count; j++)
            {
                sr[j] = RowDotKernel.Dot(q + (long)r * d, k + (long)j * d, d);
            }

            var s = new Span<float>(sr, count);
            if (bias != null)
            {
                TensorPrimitives.Add(s, new ReadOnlySpan<float>(bias + (long)r * biasStride, count), s);
            }

            float chunkMax = TensorPrimitives.Max(s);
            float newMax = OnlineSoftmax.Raise(max, sum, acc, r, d, chunkMax);

            if (float.IsNegativeInfinity(newMax))
            {
                // Every row so far has weight 0 (log-weight −∞): nothing to add.
                continue;
            }

            TensorPrimitives.Subtract(s, newMax, s);
            TensorPrimitives.Exp(s, s);
            sum[r] += TensorPrimitives.Sum(s);
        }

        for (int j = 0; j < count; j++)
        {
            var vj = new ReadOnlySpan<float>(v + (long)j * d, d);
            for (int r = 0; r < rows; r++)
            {
                if (float.IsNegativeInfinity(max[r]))
                {
                    continue;
                }

                var ar = new Span<float>(acc + (long)r * d, d);
                TensorPrimitives.MultiplyAdd(vj, scores[(long)r * count + j], ar, ar);
            }
        }
    }

    private static void Finish(float* acc, float* max, float* sum, int r, int d, Span<float> output, out float lse)
    {
        if (sum[r] > 0)
        {
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + (long)r * d, d), 1f / sum[r], output);
            lse = max[r] + MathF.Log(sum[r]);
        }
        else
        {
            output.Clear();
            lse = float.NegativeInfinity;
        }
    }
}

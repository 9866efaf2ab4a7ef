using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace KvDb.Kernels;

/// <summary>
/// Exact decode attention over a layer's blocks on the CPU: every stored row not in the exclude range
/// is scored against every query head of its GQA group, with an online (running-max) softmax so the
/// result is stable for any score magnitude. Output is f32 per query head plus its natural-log LSE.
/// Every row of K and V is read from memory once per query and shared by all query rows of its GQA group:
/// with AVX-512 and head dims that are multiples of 32 through the fused, register-blocked loops of
/// <see cref="FusedAttentionSegment"/>; otherwise each segment is widened to f32 once and fed to
/// TensorPrimitives row by row.
/// </summary>
public static unsafe class ExactAttentionKernel
{
    /// <summary>Below this many (token, KV head) pairs a parallel loop costs more than it saves.</summary>
    private const long ParallelThreshold = 16 * 1024;

    /// <summary>
    /// Computes attention for <paramref name="numQueries"/> query tokens. <paramref name="queries"/> is
    /// f32 [numQueries, NumQueryHeads, HeadDim]; <paramref name="output"/> [numQueries, NumQueryHeads, HeadDim];
    /// <paramref name="lse"/> [numQueries, NumQueryHeads]. Rows at positions in [excludeStart, excludeEnd) are skipped.
    /// </summary>
    public static AttentionCounters Run(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse) =>
        Run(geometry, blocks, queries, numQueries, excludeStart, excludeEnd, output, lse, allowFused: true);

    /// <summary>
    /// <see cref="Run(in AttentionGeometry, ReadOnlySpan{KvBlockRef}, ReadOnlySpan{float}, int, long, long, Span{float}, Span{float})"/>
    /// with the fused Vector512 loops optionally turned off, so tests can pin the portable path on machines
    /// that would never take it.
    /// </summary>
    internal static AttentionCounters Run(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse,
        bool allowFused)
    {
        geometry.Validate();
        int hq = geometry.NumQueryHeads;
        int d = geometry.HeadDim;
        if (numQueries <= 0 || queries.Length != (long)numQueries * hq * d)
        {
            throw new ArgumentException($"queries must hold {numQueries}×{hq}×{d} floats, got {queries.Length}");
        }

        if (output.Length != queries.Length || lse.Length != numQueries * hq)
        {
            throw new ArgumentException("output must match queries and lse must hold numQueries × NumQueryHeads floats");
        }

        if (excludeEnd <= excludeStart)
        {
            excludeStart = excludeEnd = long.MinValue;
        }

        long rowsPerHead = 0;
        foreach (ref readonly KvBlockRef b in blocks)
        {
            rowsPerHead += b.Tokens - OverlapWithExclude(b.Start, b.Tokens, excludeStart, excludeEnd);
        }

        AttentionGeometry g = geometry;
        fixed (KvBlockRef* pBlocks = blocks)
        fixed (float* pQueries = queries)
        fixed (float* pOutput = output)
        fixed (float* pLse = lse)
        {
            var job = new HeadJob(g, pBlocks, blocks.Length, pQueries, numQueries, excludeStart, excludeEnd, pOutput, pLse, allowFused && FusedAttentionSegment.Supports(g.HeadDim));
            if (rowsPerHead * g.NumKvHeads >= ParallelThreshold && g.NumKvHeads > 1 && Environment.ProcessorCount > 1)
            {
                Parallel.For(0, g.NumKvHeads, job.Run);
            }
            else
            {
                for (int h = 0; h < g.NumKvHeads; h++)
                {
                    job.Run(h);
                }
            }
        }

        long pairs = rowsPerHead * g.NumKvHeads * numQueries;
        long bytes = rowsPerHead * g.NumKvHeads * 2L * g.RowBytes;
        return new AttentionCounters(pairs, pairs, bytes);
    }

    /// <summary>
    /// Exact attention restricted to a selection: for KV head h, the rows of
    /// <paramref name="runs"/>[<paramref name="runOffsets"/>[h] .. <paramref name="runOffsets"/>[h + 1]) (see
    /// <see cref="KvRowRun.TryFromPositions"/>). The same fused loops as full attention, so a gathered query
    /// reads its rows at streaming speed; KV heads run in parallel when there is enough work.
    /// </summary>
    public static AttentionCounters RunSelected(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        ReadOnlySpan<KvRowRun> runs,
        ReadOnlySpan<int> runOffsets,
        ReadOnlySpan<float> queries,
        int numQueries,
        Span<float> output,
        Span<float> lse)
    {
        geometry.Validate();
        int hq = geometry.NumQueryHeads;
        int d = geometry.HeadDim;
        if (numQueries <= 0 || queries.Length != (long)numQueries * hq * d || output.Length != queries.Length || lse.Length != numQueries * hq)
        {
            throw new ArgumentException($"queries and output must hold {numQueries}×{hq}×{d} floats and lse {numQueries}×{hq}");
        }

        if (runOffsets.Length != geometry.NumKvHeads + 1 || runOffsets[0] != 0 || runOffsets[^1] != runs.Length)
        {
            throw new ArgumentException("runOffsets must hold num_kv_heads + 1 ascending offsets from 0 to runs.Length");
        }

        long rowsTotal = 0;
        for (int h = 0; h < geometry.NumKvHeads; h++)
        {
            if (runOffsets[h + 1] < runOffsets[h])
            {
                throw new ArgumentException("runOffsets must ascend");
            }

            for (int r = runOffsets[h]; r < runOffsets[h + 1]; r++)
            {
                KvRowRun run = runs[r];
                if ((uint)run.Block >= (uint)blocks.Length || run.First < 0 || run.Count <= 0 || run.First + run.Count > blocks[run.Block].Tokens)
                {
                    throw new ArgumentException($"run {r} ({run}) is outside the stored rows");
                }

                rowsTotal += run.Count;
            }
        }

        AttentionGeometry g = geometry;
        fixed (KvBlockRef* pBlocks = blocks)
        fixed (KvRowRun* pRuns = runs)
        fixed (int* pOffsets = runOffsets)
        fixed (float* pQueries = queries)
        fixed (float* pOutput = output)
        fixed (float* pLse = lse)
        {
            var job = new HeadJob(g, pBlocks, blocks.Length, pQueries, numQueries, long.MinValue, long.MinValue, pOutput, pLse, FusedAttentionSegment.Supports(g.HeadDim), pRuns, pOffsets);
            if (rowsTotal >= ParallelThreshold / 4 && g.NumKvHeads > 1 && Environment.ProcessorCount > 1)
            {
                Parallel.For(0, g.NumKvHeads, job.Run);
            }
            else
            {
                for (int h = 0; h < g.NumKvHeads; h++)
                {
                    job.Run(h);
                }
            }
        }

        long pairs = rowsTotal * numQueries;
        return new AttentionCounters(pairs, pairs, rowsTotal * 2L * g.RowBytes);
    }

    /// <summary>One KV head's share of <see cref="RunSelected"/>: writes only that head's group of query heads.</summary>
    internal static AttentionCounters RunSelectedHead(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        int kvHead,
        ReadOnlySpan<KvRowRun> runs,
        ReadOnlySpan<float> queries,
        int numQueries,
        Span<float> output,
        Span<float> lse)
    {
        long rowsTotal = 0;
        foreach (KvRowRun run in runs)
        {
            rowsTotal += run.Count;
        }

        Span<int> offsets = stackalloc int[geometry.NumKvHeads + 1];
        for (int h = kvHead + 1; h < offsets.Length; h++)
        {
            offsets[h] = runs.Length;
        }

        fixed (KvBlockRef* pBlocks = blocks)
        fixed (KvRowRun* pRuns = runs)
        fixed (int* pOffsets = offsets)
        fixed (float* pQueries = queries)
        fixed (float* pOutput = output)
        fixed (float* pLse = lse)
        {
            new HeadJob(geometry, pBlocks, blocks.Length, pQueries, numQueries, long.MinValue, long.MinValue, pOutput, pLse, FusedAttentionSegment.Supports(geometry.HeadDim), pRuns, pOffsets).Run(kvHead);
        }

        long pairs = rowsTotal * numQueries;
        return new AttentionCounters(pairs, pairs, rowsTotal * 2L * geometry.RowBytes);
    }

    private static int OverlapWithExclude(long start, int tokens, long xs, long xe)
    {
        long lo = Math.Max(start, xs);
        long hi = Math.Min(start + tokens, xe);
        return hi > lo ? (int)(hi - lo) : 0;
    }

    /// <summary>One KV head's share of a query; a class so Parallel.For can call it without capturing spans.</summary>
    private sealed class HeadJob
    {
        private readonly AttentionGeometry _g;
        private readonly KvBlockRef* _blocks;
        private readonly int _numBlocks;
        private readonly float* _queries;
        private readonly int _numQueries;
        private readonly long _xs;
        private readonly long _xe;
        private readonly float* _output;
        private readonly float* _lse;
        private readonly bool _fused;
        private readonly KvRowRun* _runs;
        private readonly int* _runOffsets;

        public HeadJob(AttentionGeometry g, KvBlockRef* blocks, int numBlocks, float* queries, int numQueries, long xs, long xe, float* output, float* lse, bool fused, KvRowRun* runs = null, int* runOffsets = null)
        {
            _fused = fused;
            _runs = runs;
            _runOffsets = runOffsets;
            _g = g;
            _blocks = blocks;
            _numBlocks = numBlocks;
            _queries = queries;
            _numQueries = numQueries;
            _xs = xs;
            _xe = xe;
            _output = output;
            _lse = lse;
        }

        // Fully optimized from the first call: a decode step over a short context runs this only a few times,
        // too few for tiering to promote it before the step is over.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int kvHead)
        {
            int d = _g.HeadDim;
            int group = _g.GroupSize;
            int rows = _numQueries * group;
            int cap = _g.BlockCapacity;

            // Scratch layout: scaled queries [rows, d] | acc [rows, d] | max [rows] | sum [rows] | scores [rows, cap] | K [cap, d] | V [cap, d]
            long need = 2L * rows * d + 2L * rows + (long)rows * cap + 2L * cap * d;
            float* q = AttentionScratch.Current.Ensure(need);
            float* acc = q + (long)rows * d;
            float* max = acc + (long)rows * d;
            float* sum = max + rows;
            float* scores = sum + rows;
            float* kBuf = scores + (long)rows * cap;
            float* vBuf = kBuf + (long)cap * d;

            // Row r = (query token t, member g of the group) reads query head kvHead * group + g.
            for (int t = 0; t < _numQueries; t++)
            {
                for (int gi = 0; gi < group; gi++)
                {
                    int r = t * group + gi;
                    float* src = _queries + (((long)t * _g.NumQueryHeads) + (kvHead * group) + gi) * d;
                    float* dst = q + ((long)r * d);
                    for (int i = 0; i < d; i++)
                    {
                        dst[StoredIndex(i)] = src[i] * _g.Scale;
                    }
                }
            }

            new Span<float>(acc, rows * d).Clear();
            new Span<float>(max, rows).Fill(float.NegativeInfinity);
            new Span<float>(sum, rows).Clear();

            long headOffset = kvHead * _g.HeadStrideBytes;
            int rowBytes = _g.RowBytes;
            if (_runs != null)
            {
                int end = _runOffsets[kvHead + 1];
                for (int ri = _runOffsets[kvHead]; ri < end; ri++)
                {
                    KvRowRun run = _runs[ri];
                    KvBlockRef block = _blocks[run.Block];
                    nint next = 0;
                    if (ri + 1 < end)
                    {
                        KvRowRun following = _runs[ri + 1];
                        next = (nint)(_blocks[following.Block].Keys + headOffset + (long)following.First * rowBytes);
                    }

                    Segment((nint)(block.Keys + headOffset + (long)run.First * rowBytes), (nint)(block.Values + headOffset + (long)run.First * rowBytes), next, run.Count, rows, q, acc, max, sum, scores, kBuf, vBuf);
                }
            }

            for (int bi = 0; _runs == null && bi < _numBlocks; bi++)
            {
                KvBlockRef block = _blocks[bi];
                long blockEnd = block.Start + block.Tokens;

                // The exclude range splits a block into at most two live segments.
                int a0 = 0;
                int b0 = block.Tokens;
                int a1 = 0;
                int b1 = 0;
                if (_xe > block.Start && _xs < blockEnd)
                {
                    b0 = (int)Math.Max(0, _xs - block.Start);
                    a1 = (int)Math.Min(block.Tokens, _xe - block.Start);
                    b1 = block.Tokens;
                }

                nint next = bi + 1 < _numBlocks ? (nint)(_blocks[bi + 1].Keys + headOffset) : 0;
                if (b0 > a0)
                {
                    Segment((nint)(block.Keys + headOffset + (long)a0 * rowBytes), (nint)(block.Values + headOffset + (long)a0 * rowBytes), next, b0 - a0, rows, q, acc, max, sum, scores, kBuf, vBuf);
                }

                if (b1 > a1)
                {
                    Segment((nint)(block.Keys + headOffset + (long)a1 * rowBytes), (nint)(block.Values + headOffset + (long)a1 * rowBytes), next, b1 - a1, rows, q, acc, max, sum, scores, kBuf, vBuf);
                }
            }

            for (int t = 0; t < _numQueries; t++)
            {
                for (int gi = 0; gi < group; gi++)
                {
                    int r = t * group + gi;
                    long head = (long)t * _g.NumQueryHeads + kvHead * group + gi;
                    float* dst = _output + (head * d);
                    float* ar = acc + ((long)r * d);
                    if (sum[r] > 0)
                    {
                        float inv = 1f / sum[r];
                        for (int i = 0; i < d; i++)
                        {
                            dst[i] = ar[StoredIndex(i)] * inv;
                        }

                        _lse[head] = max[r] + MathF.Log(sum[r]);
                    }
                    else
                    {
                        new Span<float>(dst, d).Clear();
                        _lse[head] = float.NegativeInfinity;
                    }
                }
            }
        }

        /// <summary>Where the fused loops keep logical element i of query and accumulator rows.</summary>
        private int StoredIndex(int i) => _fused && _g.DType == KvDType.BF16 ? BFloat16RowFormat.StoredIndex(i) : i;

        private void Segment(nint keys, nint values, nint nextKeys, int count, int rows, float* q, float* acc, float* max, float* sum, float* scores, float* kBuf, float* vBuf)
        {
            if (!_fused)
            {
                PortableSegment(keys, values, count, rows, q, acc, max, sum, scores, kBuf, vBuf);
                return;
            }

            int d = _g.HeadDim;
            switch (_g.DType)
            {
                case KvDType.BF16:
                    FusedAttentionSegment.Run<BFloat16RowFormat>((byte*)keys, (byte*)values, (byte*)nextKeys, count, d, rows, q, acc, max, sum, scores, count);
                    break;
                case KvDType.F32:
                    FusedAttentionSegment.Run<F32RowFormat>((byte*)keys, (byte*)values, (byte*)nextKeys, count, d, rows, q, acc, max, sum, scores, count);
                    break;
                default:
                    // No Vector512 path widens f16 in registers; widening the segment once still feeds all rows.
                    // The next segment is not prefetched: the fused loops would size its rows as f32.
                    float* k = Widen(keys, count * d, kBuf);
                    float* v = Widen(values, count * d, vBuf);
                    FusedAttentionSegment.Run<F32RowFormat>((byte*)k, (byte*)v, null, count, d, rows, q, acc, max, sum, scores, count);
                    break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PortableSegment(nint keys, nint values, int count, int rows, float* q, float* acc, float* max, float* sum, float* scores, float* kBuf, float* vBuf)
        {
            int d = _g.HeadDim;
            int elems = count * d;
            float* k = Widen(keys, elems, kBuf);

            for (int r = 0; r < rows; r++)
            {
                var qr = new ReadOnlySpan<float>(q + (long)r * d, d);
                float* sr = scores + (long)r * count;
                for (int j = 0; j < count; j++)
                {
                    sr[j] = TensorPrimitives.Dot(qr, new ReadOnlySpan<float>(k + (long)j * d, d));
                }

                var s = new Span<float>(sr, count);
                float blockMax = TensorPrimitives.Max(s);
                float newMax = OnlineSoftmax.Raise(max, sum, acc, r, d, blockMax);

                TensorPrimitives.Subtract(s, newMax, s);
                TensorPrimitives.Exp(s, s);
                sum[r] += TensorPrimitives.Sum(s);
            }

            float* v = Widen(values, elems, vBuf);
            for (int j = 0; j < count; j++)
            {
                var vj = new ReadOnlySpan<float>(v + (long)j * d, d);
                for (int r = 0; r < rows; r++)
                {
                    var ar = new Span<float>(acc + (long)r * d, d);
                    TensorPrimitives.MultiplyAdd(vj, scores[(long)r * count + j], ar, ar);
                }
            }
        }

        private float* Widen(nint source, int elems, float* buffer)
        {
            if (_g.DType == KvDType.F32)
            {
                return (float*)source;
            }

            ElementConversion.ToSingle(_g.DType, new ReadOnlySpan<byte>((void*)source, elems * KvDTypeInfo.SizeOf(_g.DType)), new Span<float>(buffer, elems));
            return buffer;
        }
    }
}

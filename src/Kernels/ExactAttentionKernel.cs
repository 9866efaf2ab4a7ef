using System.Buffers;
using System.Runtime.CompilerServices;

namespace KvDb.Kernels;

/// <summary>
/// Exact decode attention over a layer's blocks on the CPU: every stored row not in the exclude range
/// is scored against every query head of its GQA group, with an online (running-max) softmax so the
/// result is stable for any score magnitude. Output is f32 per query head plus its natural-log LSE.
/// Every row of K and V is read from memory once per query and shared by all query rows of its GQA group:
/// with AVX-512 or AVX2 + FMA and head dims that are multiples of 32 through the fused, register-blocked loops
/// (<see cref="AttentionSegment.FusedSupported"/>); otherwise each segment is widened to f32 once and fed to
/// TensorPrimitives row by row. Full attention splits the context into token ranges merged by LSE
/// (<see cref="ExactAttentionChunks"/>); a selection runs one KV head per task.
/// </summary>
public static unsafe class ExactAttentionKernel
{
    /// <summary>Below this many (token, KV head) pairs a parallel loop costs more than it saves.</summary>
    private const long ParallelThreshold = 16 * 1024;

    /// <summary>
    /// Tokens per chunk of full attention: 4 MiB of bf16 K and V for 8 KV heads of d = 128, long enough to
    /// amortize a chunk's state, short enough that 128K tokens make 128 chunks and two busy cores finish
    /// together even when one of them is shared with another process.
    /// </summary>
    private const int ChunkTokens = 1024;

    [ThreadStatic]
    private static List<KvRowRun>? t_denseRuns;

    private static long s_skippedChunks;

    /// <summary>
    /// Chunks of full attention skipped or abandoned part-way because their request was cancelled, since the process started:
    /// the evidence that an abandoned query stopped reading (the server reports it as a metric).
    /// </summary>
    public static long SkippedChunks => Interlocked.Read(ref s_skippedChunks);

    /// <summary>Cap on all chunk states together (16 MiB): many query tokens make each state large.</summary>
    private const long MaxChunkStateFloats = 4L << 20;

    /// <summary>
    /// Computes attention for <paramref name="numQueries"/> query tokens. <paramref name="queries"/> is
    /// f32 [numQueries, NumQueryHeads, HeadDim]; <paramref name="output"/> [numQueries, NumQueryHeads, HeadDim];
    /// <paramref name="lse"/> [numQueries, NumQueryHeads]. Rows at positions in [excludeStart, excludeEnd) are skipped.
    /// <paramref name="cancellation"/> is checked before each chunk of tokens and every 16 blocks within one: once it is
    /// set no further block is read, and the call throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public static AttentionCounters Run(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse,
        StopSignal cancellation = default) =>
        Run(geometry, blocks, queries, numQueries, excludeStart, excludeEnd, output, lse, allowFused: true, cancellation: cancellation);

    /// <summary>
    /// <see cref="Run(in AttentionGeometry, ReadOnlySpan{KvBlockRef}, ReadOnlySpan{float}, int, long, long, Span{float}, Span{float}, StopSignal)"/>
    /// with the fused loops (either width) optionally turned off, so tests can pin the portable path on machines
    /// that would never take it, and with the chunk length optionally forced (<paramref name="chunkTokens"/>
    /// &gt; 0), so tests can split small contexts.
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
        bool allowFused,
        int chunkTokens = 0,
        StopSignal cancellation = default)
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
        bool fused = allowFused && AttentionSegment.FusedSupported(g.HeadDim);
        int blocksPerChunk = BlocksPerChunk(g, blocks.Length, numQueries, rowsPerHead, chunkTokens);
        int chunks = Math.Max(1, (blocks.Length + blocksPerChunk - 1) / blocksPerChunk);
        long bufferFloats = ExactAttentionChunks.BufferFloats(g, numQueries, chunks);

        // Pooled, so a decode step allocates nothing once the pool holds a buffer of this size; 16 floats of
        // slack let the state start on a 64-byte boundary.
        float[] rented = ArrayPool<float>.Shared.Rent(checked((int)(bufferFloats + 16)));
        try
        {
            fixed (KvBlockRef* pBlocks = blocks)
            fixed (float* pQueries = queries)
            fixed (float* pOutput = output)
            fixed (float* pLse = lse)
            fixed (float* pRented = rented)
            {
                float* buffer = (float*)(((nint)pRented + 63) & ~(nint)63);
                var job = new ExactAttentionChunks(g, pBlocks, blocks.Length, blocksPerChunk, numQueries, excludeStart, excludeEnd, fused, buffer) { Cancellation = cancellation };
                job.ScaleQueries(pQueries);
                if (job.ChunkCount > 1 && Environment.ProcessorCount > 1)
                {
                    Parallel.For(0, job.ChunkCount, job.Run);
                }
                else
                {
                    for (int c = 0; c < job.ChunkCount; c++)
                    {
                        job.Run(c);
                    }
                }

                if (job.Skipped > 0)
                {
                    Interlocked.Add(ref s_skippedChunks, job.Skipped);
                    cancellation.ThrowIfSet();
                }

                job.Merge(pOutput, pLse);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
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
            var job = new HeadJob(g, pBlocks, pQueries, numQueries, pOutput, pLse, AttentionSegment.FusedSupported(g.HeadDim), pRuns, pOffsets);
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

    /// <summary>
    /// Exact attention of the query heads served by <paramref name="kvHead"/> over every stored row outside the exclude
    /// range (a dense head among gathered ones); only the group's heads of <paramref name="output"/> and <paramref name="lse"/> are written.
    /// </summary>
    public static AttentionCounters RunHead(
        in AttentionGeometry geometry,
        ReadOnlySpan<KvBlockRef> blocks,
        int kvHead,
        long excludeStart,
        long excludeEnd,
        ReadOnlySpan<float> queries,
        int numQueries,
        Span<float> output,
        Span<float> lse)
    {
        geometry.Validate();
        if ((uint)kvHead >= (uint)geometry.NumKvHeads || numQueries <= 0 || queries.Length != (long)numQueries * geometry.NumQueryHeads * geometry.HeadDim
            || output.Length != queries.Length || lse.Length != numQueries * geometry.NumQueryHeads)
        {
            throw new ArgumentException($"need kvHead in [0, {geometry.NumKvHeads}), queries and output of {numQueries}×{geometry.NumQueryHeads}×{geometry.HeadDim} floats and lse {numQueries}×{geometry.NumQueryHeads}");
        }

        List<KvRowRun> runs = t_denseRuns ??= [];
        runs.Clear();
        KvRowRun.AppendAllExcept(blocks, excludeStart, excludeEnd, runs);
        return RunSelectedHead(geometry, blocks, kvHead, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(runs), queries, numQueries, output, lse);
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
            new HeadJob(geometry, pBlocks, pQueries, numQueries, pOutput, pLse, AttentionSegment.FusedSupported(geometry.HeadDim), pRuns, pOffsets).Run(kvHead);
        }

        long pairs = rowsTotal * numQueries;
        return new AttentionCounters(pairs, pairs, rowsTotal * 2L * geometry.RowBytes);
    }

    /// <summary>
    /// Blocks per chunk of full attention. The split depends only on the data, never on the number of cores,
    /// so a query gives the same bits on every machine: one chunk below the parallel threshold, else chunks
    /// of <see cref="ChunkTokens"/> tokens, longer where the chunk states would outgrow their cap.
    /// </summary>
    private static int BlocksPerChunk(in AttentionGeometry g, int numBlocks, int numQueries, long rowsPerHead, int chunkTokens)
    {
        int cap = g.BlockCapacity;
        if (chunkTokens > 0)
        {
            return Math.Max(1, chunkTokens / cap);
        }

        if (rowsPerHead * g.NumKvHeads < ParallelThreshold || numBlocks <= 1)
        {
            return Math.Max(1, numBlocks);
        }

        long maxChunks = Math.Max(1, MaxChunkStateFloats / ExactAttentionChunks.SlotFloats(g, numQueries));
        long byMemory = (numBlocks + maxChunks - 1) / maxChunks;
        return (int)Math.Max(Math.Max(1, ChunkTokens / cap), byMemory);
    }

    private static int OverlapWithExclude(long start, int tokens, long xs, long xe)
    {
        long lo = Math.Max(start, xs);
        long hi = Math.Min(start + tokens, xe);
        return hi > lo ? (int)(hi - lo) : 0;
    }

    /// <summary>One KV head's share of a selection; a class so Parallel.For can call it without capturing spans.</summary>
    private sealed class HeadJob
    {
        private readonly AttentionGeometry _g;
        private readonly KvBlockRef* _blocks;
        private readonly float* _queries;
        private readonly int _numQueries;
        private readonly float* _output;
        private readonly float* _lse;
        private readonly bool _fused;
        private readonly KvRowRun* _runs;
        private readonly int* _runOffsets;

        public HeadJob(AttentionGeometry g, KvBlockRef* blocks, float* queries, int numQueries, float* output, float* lse, bool fused, KvRowRun* runs, int* runOffsets)
        {
            _fused = fused;
            _runs = runs;
            _runOffsets = runOffsets;
            _g = g;
            _blocks = blocks;
            _queries = queries;
            _numQueries = numQueries;
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
                    float* src = _queries + (_g.QueryHead(t, kvHead, gi) * d);
                    float* dst = q + ((long)r * d);
                    for (int i = 0; i < d; i++)
                    {
                        dst[AttentionSegment.StoredIndex(_g, _fused, i)] = src[i] * _g.Scale;
                    }
                }
            }

            new Span<float>(acc, rows * d).Clear();
            new Span<float>(max, rows).Fill(float.NegativeInfinity);
            new Span<float>(sum, rows).Clear();

            long headOffset = kvHead * _g.HeadStrideBytes;
            int rowBytes = _g.RowBytes;
            int end = _runOffsets[kvHead + 1];
            for (int ri = _runOffsets[kvHead]; ri < end; ri++)
            {
                KvRowRun run = _runs[ri];
                KvBlockRef block = _blocks[run.Block];
                nint next = 0;
                nint nextV = 0;
                if (ri + 1 < end)
                {
                    KvRowRun following = _runs[ri + 1];
                    next = (nint)(_blocks[following.Block].Keys + headOffset + (long)following.First * rowBytes);
                    nextV = (nint)(_blocks[following.Block].Values + headOffset + (long)following.First * rowBytes);
                }

                AttentionSegment.Fold(_g, _fused, (nint)(block.Keys + headOffset + (long)run.First * rowBytes), (nint)(block.Values + headOffset + (long)run.First * rowBytes), next, nextV, run.Count, rows, q, acc, max, sum, scores, kBuf, vBuf);
            }

            for (int t = 0; t < _numQueries; t++)
            {
                for (int gi = 0; gi < group; gi++)
                {
                    int r = t * group + gi;
                    long head = _g.QueryHead(t, kvHead, gi);
                    float* dst = _output + (head * d);
                    float* ar = acc + ((long)r * d);
                    if (sum[r] > 0)
                    {
                        float inv = 1f / sum[r];
                        for (int i = 0; i < d; i++)
                        {
                            dst[i] = ar[AttentionSegment.StoredIndex(_g, _fused, i)] * inv;
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
    }
}

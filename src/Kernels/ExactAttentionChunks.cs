using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace KvDb.Kernels;

/// <summary>
/// Exact attention split into token ranges: chunk c covers blocks [c·B, (c+1)·B) (1024 tokens, 4 MiB of bf16
/// K and V for 8 KV heads of d = 128) and passes over them once per KV head, keeping one online-softmax state
/// per KV head. Splitting by token range rather than by KV head keeps every thread inside a few MiB at a time.
/// A thread that walks one KV head through a 128K context touches 16 KiB of every 256 KiB, so the page-table
/// line of each 4 KiB page is fetched again for every head pass over 1 MiB of page tables; that is the likely
/// reason 128K ran at a lower fraction of the streaming bandwidth than 32K (on 2 MiB pages one measurement
/// found the two equal). A chunk's pages and page tables are reused by its eight head passes, and 128 chunks
/// balance two cores that share the machine with others. A head pass keeps that head's state in L1; a
/// block-major order (every head per block) measured no faster.
/// Chunks run on any threads in any order; each leaves its unnormalized state in its own slot and
/// <see cref="Merge"/> combines them in chunk order, so the result does not depend on how many threads ran
/// or how the chunks were scheduled.
/// Unsafe: the blocks, queries and the buffer (scaled queries then one slot per chunk) are pinned by the
/// caller for the lifetime of the job; a chunk writes only its own slot.
/// </summary>
internal sealed unsafe class ExactAttentionChunks
{
    private readonly AttentionGeometry _g;
    private readonly KvBlockRef* _blocks;
    private readonly int _numBlocks;
    private readonly int _blocksPerChunk;
    private readonly int _numQueries;
    private readonly int _rows;
    private readonly long _xs;
    private readonly long _xe;
    private readonly bool _fused;
    private readonly float* _q;
    private readonly float* _slots;
    private readonly long _slotFloats;

    /// <param name="buffer">At least <see cref="BufferFloats"/> floats, 64-byte aligned.</param>
    public ExactAttentionChunks(in AttentionGeometry g, KvBlockRef* blocks, int numBlocks, int blocksPerChunk, int numQueries, long xs, long xe, bool fused, float* buffer)
    {
        _g = g;
        _blocks = blocks;
        _numBlocks = numBlocks;
        _blocksPerChunk = Math.Max(1, blocksPerChunk);
        _numQueries = numQueries;
        _rows = numQueries * g.GroupSize;
        _xs = xs;
        _xe = xe;
        _fused = fused;
        _q = buffer;
        _slotFloats = SlotFloats(g, numQueries);
        _slots = buffer + StateFloats(g, numQueries);
        ChunkCount = Math.Max(1, (numBlocks + _blocksPerChunk - 1) / _blocksPerChunk);
    }

    /// <summary>Checked before each chunk and every 16 blocks within one: a cancelled request stops reading.</summary>
    public StopSignal Cancellation { get; init; }

    /// <summary>Chunks skipped or abandoned part-way because <see cref="Cancellation"/> was set (their state is never merged).</summary>
    public int Skipped => Volatile.Read(ref _skipped);

    private int _skipped;

    /// <summary>Chunks to run: <see cref="Run"/> takes 0 .. ChunkCount − 1 (one chunk of no blocks when there are none).</summary>
    public int ChunkCount { get; }

    /// <summary>Floats of one chunk's state: acc [kvHeads, rows, d] then max and sum [kvHeads, rows], padded to 64 bytes.</summary>
    public static long SlotFloats(in AttentionGeometry g, int numQueries)
    {
        long rows = (long)g.NumKvHeads * numQueries * g.GroupSize;
        return ((rows * (g.HeadDim + 2)) + 15) & ~15L;
    }

    /// <summary>Buffer size for <paramref name="chunks"/> chunks: the scaled queries and one slot per chunk.</summary>
    public static long BufferFloats(in AttentionGeometry g, int numQueries, int chunks) =>
        StateFloats(g, numQueries) + (chunks * SlotFloats(g, numQueries));

    /// <summary>
    /// Writes the queries, scaled and in the fused loops' element order, grouped by the KV head that serves
    /// them: [kvHead, rows, d] with row r = (query token r / group, member r % group).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void ScaleQueries(float* queries)
    {
        int d = _g.HeadDim;
        int group = _g.GroupSize;
        for (int h = 0; h < _g.NumKvHeads; h++)
        {
            for (int r = 0; r < _rows; r++)
            {
                int t = r / group;
                float* src = queries + (_g.QueryHead(t, h, r % group) * d);
                float* dst = _q + ((((long)h * _rows) + r) * d);
                for (int i = 0; i < d; i++)
                {
                    dst[AttentionSegment.StoredIndex(_g, _fused, i)] = src[i] * _g.Scale;
                }
            }
        }
    }

    // Fully optimized from the first call: a decode step over a short context runs this only a few times,
    // too few for tiering to promote it before the step is over.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(int chunk)
    {
        if (Cancellation.IsSet)
        {
            Interlocked.Increment(ref _skipped);
            return;
        }

        int d = _g.HeadDim;
        int rows = _rows;
        int hkv = _g.NumKvHeads;
        int cap = _g.BlockCapacity;
        long headRows = (long)hkv * rows;
        float* acc = _slots + (chunk * _slotFloats);
        float* max = acc + (headRows * d);
        float* sum = max + headRows;
        new Span<float>(acc, checked((int)(headRows * d))).Clear();
        new Span<float>(max, (int)headRows).Fill(float.NegativeInfinity);
        new Span<float>(sum, (int)headRows).Clear();

        // Per-thread scratch: scores [rows, cap] | K [cap, d] | V [cap, d] (the last two for widened rows).
        float* scores = AttentionScratch.Current.Ensure(((long)rows * cap) + (2L * cap * d));
        float* kBuf = scores + ((long)rows * cap);
        float* vBuf = kBuf + ((long)cap * d);

        long headStride = _g.HeadStrideBytes;
        int rowBytes = _g.RowBytes;
        int first = chunk * _blocksPerChunk;
        int end = Math.Min(_numBlocks, first + _blocksPerChunk);
        for (int h = 0; h < hkv; h++)
        {
            long headOffset = h * headStride;
            float* q = _q + (h * rows * (long)d);
            float* hAcc = acc + (h * rows * (long)d);
            float* hMax = max + ((long)h * rows);
            float* hSum = sum + ((long)h * rows);
            for (int bi = first; bi < end; bi++)
            {
                // Also within a chunk (every 16 blocks, a cheap read): many query rows make a chunk long.
                if ((bi & 15) == 0 && Cancellation.IsSet)
                {
                    Interlocked.Increment(ref _skipped);
                    return;
                }

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

                // The next segment this pass reads: the same head in the next block, or the next head's first block.
                nint next = bi + 1 < end ? (nint)(_blocks[bi + 1].Keys + headOffset) : h + 1 < hkv ? (nint)(_blocks[first].Keys + headOffset + headStride) : 0;
                nint nextV = bi + 1 < end ? (nint)(_blocks[bi + 1].Values + headOffset) : h + 1 < hkv ? (nint)(_blocks[first].Values + headOffset + headStride) : 0;
                if (b0 > a0)
                {
                    AttentionSegment.Fold(_g, _fused, (nint)(block.Keys + headOffset + ((long)a0 * rowBytes)), (nint)(block.Values + headOffset + ((long)a0 * rowBytes)), next, nextV, b0 - a0, rows, q, hAcc, hMax, hSum, scores, kBuf, vBuf);
                }

                if (b1 > a1)
                {
                    AttentionSegment.Fold(_g, _fused, (nint)(block.Keys + headOffset + ((long)a1 * rowBytes)), (nint)(block.Values + headOffset + ((long)a1 * rowBytes)), next, nextV, b1 - a1, rows, q, hAcc, hMax, hSum, scores, kBuf, vBuf);
                }
            }
        }
    }

    /// <summary>
    /// Combines the chunk states into the final output [numQueries, NumQueryHeads, d] and natural-log LSE.
    /// This is the LSE merge of BRIEF section 5 on unnormalized states: with M the largest running max,
    /// acc = Σ_c e^(max_c − M)·acc_c, sum = Σ_c e^(max_c − M)·sum_c, then o = acc / sum and
    /// lse = M + log(sum). A chunk that saw no rows (max −∞) adds nothing; a row no chunk saw gives o = 0, lse = −∞.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Merge(float* output, float* lse)
    {
        int d = _g.HeadDim;
        int group = _g.GroupSize;
        long headRows = (long)_g.NumKvHeads * _rows;
        for (long hr = 0; hr < headRows; hr++)
        {
            int h = (int)(hr / _rows);
            int r = (int)(hr % _rows);
            long head = _g.QueryHead(r / group, h, r % group);
            float* dst = output + (head * d);

            float m = float.NegativeInfinity;
            for (int c = 0; c < ChunkCount; c++)
            {
                m = Math.Max(m, Max(c)[hr]);
            }

            if (float.IsNegativeInfinity(m))
            {
                new Span<float>(dst, d).Clear();
                lse[head] = float.NegativeInfinity;
                continue;
            }

            // Chunk 0's accumulator row becomes the merged one.
            var total = new Span<float>(Acc(0) + (hr * d), d);
            float s = 0;
            for (int c = 0; c < ChunkCount; c++)
            {
                float cm = Max(c)[hr];
                if (float.IsNegativeInfinity(cm))
                {
                    if (c == 0)
                    {
                        total.Clear();
                    }

                    continue;
                }

                float w = MathF.Exp(cm - m);
                s += w * Sum(c)[hr];
                var part = new ReadOnlySpan<float>(Acc(c) + (hr * d), d);
                if (c == 0)
                {
                    if (w != 1f)
                    {
                        TensorPrimitives.Multiply(total, w, total);
                    }
                }
                else
                {
                    TensorPrimitives.MultiplyAdd(part, w, total, total);
                }
            }

            float inv = 1f / s;
            for (int i = 0; i < d; i++)
            {
                dst[i] = total[AttentionSegment.StoredIndex(_g, _fused, i)] * inv;
            }

            lse[head] = m + MathF.Log(s);
        }
    }

    private static long StateFloats(in AttentionGeometry g, int numQueries) =>
        (((long)g.NumKvHeads * numQueries * g.GroupSize * g.HeadDim) + 15) & ~15L;

    private float* Acc(int chunk) => _slots + (chunk * _slotFloats);

    private float* Max(int chunk) => Acc(chunk) + ((long)_g.NumKvHeads * _rows * _g.HeadDim);

    private float* Sum(int chunk) => Max(chunk) + ((long)_g.NumKvHeads * _rows);
}

namespace KvDb.Kernels.Cuda;

/// <summary>
/// Attention, scoring and top-k on one CUDA device over K/V that already live there (the GPU tier):
/// split-K (flash-decoding) attention with output and natural-log LSE for the contiguous and the
/// block-paged layout, dense or gathered, with the same semantics as <see cref="ExactAttentionKernel"/>
/// (GQA head mapping, scale, exclude range, empty selection = output 0 and LSE −∞).
/// <para>
/// Two kinds of methods. The <c>…Async</c> ones take device addresses only, queue the kernel on this
/// backend's stream and return; the caller keeps every buffer alive and unchanged until
/// <see cref="Synchronize"/> (or a later synchronous call) and guarantees that gathered positions are
/// below the source's token count. The others take host spans for the small per-query data (queries,
/// positions, outputs), check every shape and position so no kernel can read outside the K/V the
/// source describes, and copy through staging buffers owned here; K/V are never copied.
/// </para>
/// <para>
/// Unsafe code: host spans are pinned with <c>fixed</c> only around synchronous copies, which finish
/// before the pin ends; the native context pointer is owned by this instance and freed once in
/// <see cref="Dispose"/>. Calls on one instance are serialized by a lock.
/// </para>
/// </summary>
public sealed unsafe class CudaAttentionBackend : IDisposable
{
    private readonly object _gate = new();
    private nint _ctx;
    private DeviceBuffer? _queries;
    private DeviceBuffer? _output;
    private DeviceBuffer? _lse;
    private DeviceBuffer? _positions;
    private DeviceBuffer? _offsets;
    private DeviceBuffer? _scores;
    private DeviceBuffer? _topValues;
    private DeviceBuffer? _topIndices;

    /// <summary>Opens a context (a stream and kernel scratch space) on <paramref name="device"/>.</summary>
    public CudaAttentionBackend(int device = 0)
    {
        CudaNative native = CudaRuntime.Native;
        nint ctx;
        CudaRuntime.Check(native.CtxCreate(device, &ctx), "kvdb_ctx_create");
        _ctx = ctx;
        int sms;
        CudaRuntime.Check(native.CtxMultiprocessors(ctx, &sms), "kvdb_ctx_multiprocessors");
        Device = device;
        MultiprocessorCount = sms;
    }

    /// <summary>The device this backend runs on.</summary>
    public int Device { get; }

    /// <summary>Streaming multiprocessors of the device.</summary>
    public int MultiprocessorCount { get; }

    /// <summary>A backend on <paramref name="device"/>, or null when CUDA is unavailable.</summary>
    public static CudaAttentionBackend? TryCreate(int device = 0)
    {
        if (!CudaRuntime.IsAvailable || device >= CudaRuntime.DeviceCount)
        {
            return null;
        }

        try
        {
            return new CudaAttentionBackend(device);
        }
        catch (CudaException)
        {
            return null;
        }
    }

    /// <summary>
    /// Queues attention of <paramref name="numQueries"/> query tokens (device f32 [numQueries, Hq, d]) over
    /// the rows of <paramref name="kv"/> that <paramref name="selection"/> names, minus [excludeStart, excludeEnd).
    /// Writes device f32 output [numQueries, Hq, d] and LSE [numQueries, Hq]. <paramref name="numSplits"/> 0 = automatic.
    /// </summary>
    public void AttentionAsync(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        in GpuSelection selection,
        nint queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        nint output,
        nint lse,
        int numSplits = 0)
    {
        KvdbAttnArgs a = MakeArgs(geometry, kv, selection, queries, numQueries, excludeStart, excludeEnd);
        if (output == 0 || lse == 0)
        {
            throw new ArgumentException("output and lse must be device addresses");
        }

        a.Output = output;
        a.Lse = lse;
        a.NumSplits = numSplits;
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.Attention(Ctx, &a), "kvdb_attention");
        }
    }

    /// <summary>
    /// Queues one launch of attention for every request of <paramref name="batch"/> (each request's rows,
    /// queries and outputs as in <see cref="AttentionAsync"/>). <paramref name="numSplits"/> is per request and
    /// KV head, 0 = automatic (one wave of CTAs over all requests); with the same explicit split count each
    /// request's result equals an <see cref="AttentionAsync"/> call on it.
    /// </summary>
    public void AttentionBatchAsync(GpuAttentionBatch batch, int numSplits = 0)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(numSplits);
        AttentionGeometry g = batch.Geometry;
        var a = new KvdbAttnBatchArgs
        {
            Requests = batch.Descriptors,
            MaxRows = batch.MaxRows,
            Batch = batch.Count,
            Gathered = batch.Gathered ? 1 : 0,
            NumQueryHeads = g.NumQueryHeads,
            NumKvHeads = g.NumKvHeads,
            HeadDim = g.HeadDim,
            DType = (int)g.DType,
            Layout = (int)batch.Layout,
            BlockCapacity = g.BlockCapacity,
            NumQueries = batch.NumQueries,
            Scale = g.Scale,
            NumSplits = numSplits,
        };
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.AttentionBatch(Ctx, &a), "kvdb_attention_batch");
        }
    }

    /// <summary>Dense attention over device K/V with host queries and outputs (shapes as in <see cref="ExactAttentionKernel.Run"/>).</summary>
    public void Attention(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse) =>
        RunHost(geometry, kv, [], [], queries, numQueries, excludeStart, excludeEnd, output, lse, gathered: false);

    /// <summary>
    /// Gathered attention: KV head h attends positions[offsets[h] .. offsets[h + 1]) (each below kv.NumTokens),
    /// minus the exclude range. offsets has NumKvHeads + 1 entries, starting at 0.
    /// </summary>
    public void GatheredAttention(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        ReadOnlySpan<int> positions,
        ReadOnlySpan<int> offsets,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse) =>
        RunHost(geometry, kv, positions, offsets, queries, numQueries, excludeStart, excludeEnd, output, lse, gathered: true);

    /// <summary>
    /// Queues scores scale·q·k into device f32 <paramref name="scores"/>: entry [(t·Hq + q)·stride + j] for the
    /// j-th row of query head q's KV head (dense: j is the position; excluded rows get −∞).
    /// </summary>
    public void ScoreAsync(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        in GpuSelection selection,
        nint queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        nint scores,
        long stride)
    {
        KvdbAttnArgs a = MakeArgs(geometry, kv, selection, queries, numQueries, excludeStart, excludeEnd);
        if (scores == 0)
        {
            throw new ArgumentException("scores must be a device address");
        }

        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.Score(Ctx, &a, scores, stride), "kvdb_score");
        }
    }

    /// <summary>
    /// Scores with host data: dense when <paramref name="positions"/> is empty and <paramref name="offsets"/> is
    /// empty, gathered otherwise. <paramref name="scores"/> holds numQueries·Hq·stride floats; entries past a
    /// head's row count are NaN.
    /// </summary>
    public void Score(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        ReadOnlySpan<int> positions,
        ReadOnlySpan<int> offsets,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> scores,
        long stride)
    {
        bool gathered = !offsets.IsEmpty;
        CheckQueries(geometry, queries, numQueries);
        long need = (long)numQueries * geometry.NumQueryHeads * stride;
        if (scores.Length != need)
        {
            throw new ArgumentException($"scores must hold numQueries × NumQueryHeads × stride = {need} floats");
        }

        lock (_gate)
        {
            GpuSelection selection = gathered ? UploadSelection(geometry, kv, positions, offsets) : default;
            long rows = gathered ? selection.MaxPerHead : kv.NumTokens;
            if (stride < rows)
            {
                throw new ArgumentException($"stride {stride} is shorter than the {rows} rows of a head");
            }

            nint q = Stage(ref _queries, queries);
            nint s = Ensure(ref _scores, need * sizeof(float)).Pointer;
            CudaRuntime.Memset(s, 0xFF, need * sizeof(float));
            KvdbAttnArgs a = MakeArgs(geometry, kv, selection, q, numQueries, excludeStart, excludeEnd);
            CudaRuntime.Check(CudaRuntime.Native.Score(Ctx, &a, s, stride), "kvdb_score");
            SynchronizeLocked();
            CudaRuntime.CopyToHost(scores, s);
        }
    }

    /// <summary>
    /// Queues top-k of each row of device f32 values (row r at values + r·stride floats, n entries) into device
    /// [rows, k] outputs, sorted descending (equal values by lower index; which of several values equal to the
    /// k-th largest are kept is unspecified). k ≤ min(n, 4096).
    /// </summary>
    public void TopKAsync(nint values, int rows, int n, long stride, int k, nint outValues, nint outIndices)
    {
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.TopK(Ctx, values, rows, n, stride, k, outValues, outIndices), "kvdb_topk");
        }
    }

    /// <summary>Top-k of each of <paramref name="rows"/> host rows of <paramref name="n"/> values.</summary>
    public void TopK(ReadOnlySpan<float> values, int rows, int n, int k, Span<float> outValues, Span<int> outIndices)
    {
        if (values.Length != (long)rows * n || outValues.Length != (long)rows * k || outIndices.Length != (long)rows * k)
        {
            throw new ArgumentException("values must hold rows × n floats and the outputs rows × k entries");
        }

        if (k < 0 || k > n || k > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, "k must be in [0, min(n, 4096)]");
        }

        lock (_gate)
        {
            nint v = Stage(ref _scores, values);
            nint ov = Ensure(ref _topValues, Math.Max(4L, (long)rows * k * sizeof(float))).Pointer;
            nint oi = Ensure(ref _topIndices, Math.Max(4L, (long)rows * k * sizeof(int))).Pointer;
            CudaRuntime.Check(CudaRuntime.Native.TopK(Ctx, v, rows, n, n, k, ov, oi), "kvdb_topk");
            SynchronizeLocked();
            CudaRuntime.CopyToHost(outValues, ov);
            CudaRuntime.CopyToHost(outIndices, oi);
        }
    }

    /// <summary>Waits until every queued kernel of this backend has finished.</summary>
    public void Synchronize()
    {
        lock (_gate)
        {
            SynchronizeLocked();
        }
    }

    /// <summary>Benchmark helper: fills <paramref name="count"/> device elements with normal(0, stddev) values.</summary>
    public void FillRandom(nint pointer, long count, KvDType dtype, ulong seed, float stddev = 1f)
    {
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.FillRandom(Ctx, pointer, count, (int)dtype, seed, stddev), "kvdb_fill_random");
        }
    }

    /// <summary>Benchmark helper: queues one streaming read of <paramref name="bytes"/> (a multiple of 16).</summary>
    public void ReadBytes(nint pointer, long bytes)
    {
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.ReadBytes(Ctx, pointer, (ulong)bytes), "kvdb_read_bytes");
        }
    }

    /// <summary>Queues AUTO's device-side selection (kvdb_auto_select); <see cref="GpuAutoAttention"/> owns every buffer it names.</summary>
    internal void AutoSelectAsync(in KvdbAutoSelectArgs args)
    {
        KvdbAutoSelectArgs a = args;
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.AutoSelect(Ctx, &a), "kvdb_auto_select");
        }
    }

    /// <summary>Queues AUTO's merge of the heavy and the sampled partial with its error bound (kvdb_auto_merge).</summary>
    internal void AutoMergeAsync(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        nint queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        nint output,
        nint lse,
        in KvdbAutoMergeArgs args)
    {
        KvdbAttnArgs a = MakeArgs(geometry, kv, default, queries, numQueries, excludeStart, excludeEnd);
        a.Output = output;
        a.Lse = lse;
        KvdbAutoMergeArgs m = args;
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.AutoMerge(Ctx, &a, &m), "kvdb_auto_merge");
        }
    }

    /// <summary>Benchmark helper: queues a write over a buffer larger than L2, so the next kernel starts cold.</summary>
    public void FlushL2()
    {
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.FlushL2(Ctx), "kvdb_flush_l2");
        }
    }

    /// <summary>Queues <paramref name="gpuEvent"/> on this backend's stream.</summary>
    public void Record(GpuEvent gpuEvent)
    {
        lock (_gate)
        {
            CudaRuntime.Check(CudaRuntime.Native.EventRecord(Ctx, gpuEvent.Handle), "cudaEventRecord");
        }
    }

    /// <summary>Frees the context and the staging buffers.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            nint ctx = _ctx;
            if (ctx == 0)
            {
                return;
            }

            _ctx = 0;
            foreach (DeviceBuffer? b in new[] { _queries, _output, _lse, _positions, _offsets, _scores, _topValues, _topIndices })
            {
                b?.Dispose();
            }

            CudaRuntime.Check(CudaRuntime.Native.CtxDestroy(ctx), "kvdb_ctx_destroy");
        }
    }

    private nint Ctx => _ctx != 0 ? _ctx : throw new ObjectDisposedException(nameof(CudaAttentionBackend));

    private void RunHost(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        ReadOnlySpan<int> positions,
        ReadOnlySpan<int> offsets,
        ReadOnlySpan<float> queries,
        int numQueries,
        long excludeStart,
        long excludeEnd,
        Span<float> output,
        Span<float> lse,
        bool gathered)
    {
        CheckQueries(geometry, queries, numQueries);
        if (output.Length != queries.Length || lse.Length != (long)numQueries * geometry.NumQueryHeads)
        {
            throw new ArgumentException("output must match queries and lse must hold numQueries × NumQueryHeads floats");
        }

        lock (_gate)
        {
            GpuSelection selection = gathered ? UploadSelection(geometry, kv, positions, offsets) : default;
            nint q = Stage(ref _queries, queries);
            nint o = Ensure(ref _output, (long)output.Length * sizeof(float)).Pointer;
            nint l = Ensure(ref _lse, (long)lse.Length * sizeof(float)).Pointer;
            KvdbAttnArgs a = MakeArgs(geometry, kv, selection, q, numQueries, excludeStart, excludeEnd);
            a.Output = o;
            a.Lse = l;
            CudaRuntime.Check(CudaRuntime.Native.Attention(Ctx, &a), "kvdb_attention");
            SynchronizeLocked();
            CudaRuntime.CopyToHost(output, o);
            CudaRuntime.CopyToHost(lse, l);
        }
    }

    private GpuSelection UploadSelection(in AttentionGeometry geometry, in GpuKvSource kv, ReadOnlySpan<int> positions, ReadOnlySpan<int> offsets)
    {
        if (offsets.Length != geometry.NumKvHeads + 1 || offsets[0] != 0 || offsets[^1] != positions.Length)
        {
            throw new ArgumentException("offsets must hold NumKvHeads + 1 entries from 0 to positions.Length");
        }

        int maxPerHead = 0;
        for (int h = 0; h < geometry.NumKvHeads; h++)
        {
            int count = offsets[h + 1] - offsets[h];
            if (count < 0)
            {
                throw new ArgumentException("offsets must not decrease");
            }

            maxPerHead = Math.Max(maxPerHead, count);
        }

        foreach (int p in positions)
        {
            if (p < 0 || p >= kv.NumTokens)
            {
                throw new ArgumentOutOfRangeException(nameof(positions), p, $"positions must lie in [0, {kv.NumTokens})");
            }
        }

        nint pos = Stage(ref _positions, positions);
        nint off = Stage(ref _offsets, offsets);
        return new GpuSelection(pos, off, maxPerHead);
    }

    private static void CheckQueries(in AttentionGeometry geometry, ReadOnlySpan<float> queries, int numQueries)
    {
        geometry.Validate();
        if (numQueries <= 0 || queries.Length != (long)numQueries * geometry.NumQueryHeads * geometry.HeadDim)
        {
            throw new ArgumentException($"queries must hold {numQueries}×{geometry.NumQueryHeads}×{geometry.HeadDim} floats, got {queries.Length}");
        }
    }

    private static KvdbAttnArgs MakeArgs(
        in AttentionGeometry geometry,
        in GpuKvSource kv,
        in GpuSelection selection,
        nint queries,
        int numQueries,
        long excludeStart,
        long excludeEnd)
    {
        geometry.Validate();
        if (queries == 0 || numQueries <= 0 || kv.NumTokens < 0 || kv.NumTokens > int.MaxValue - 65536)
        {
            throw new ArgumentException("need device queries, at least one query token and 0 ≤ NumTokens ≤ int.MaxValue − 65536");
        }

        var a = new KvdbAttnArgs
        {
            Queries = queries,
            NumTokens = kv.NumTokens,
            ExcludeStart = excludeStart,
            ExcludeEnd = excludeEnd,
            NumQueryHeads = geometry.NumQueryHeads,
            NumKvHeads = geometry.NumKvHeads,
            HeadDim = geometry.HeadDim,
            DType = (int)geometry.DType,
            Layout = (int)kv.Layout,
            BlockCapacity = geometry.BlockCapacity,
            NumQueries = numQueries,
            Scale = geometry.Scale,
        };
        if (kv.Layout == GpuKvLayout.Contiguous)
        {
            if (kv.Keys == 0 || kv.Values == 0)
            {
                throw new ArgumentException("a contiguous source needs device keys and values");
            }

            a.Keys = kv.Keys;
            a.Values = kv.Values;
            a.KvCapacity = kv.Capacity;
        }
        else
        {
            if (kv.BlockTable == 0)
            {
                throw new ArgumentException("a block source needs a device block table");
            }

            a.BlockTable = kv.BlockTable;
        }

        if (!selection.IsDense)
        {
            if (selection.Offsets == 0 || selection.MaxPerHead < 0)
            {
                throw new ArgumentException("a gathered selection needs device offsets and MaxPerHead ≥ 0");
            }

            a.Positions = selection.Positions;
            a.Offsets = selection.Offsets;
            a.MaxPositions = selection.MaxPerHead;
        }

        return a;
    }

    private nint Stage<T>(ref DeviceBuffer? buffer, ReadOnlySpan<T> data)
        where T : unmanaged
    {
        DeviceBuffer b = Ensure(ref buffer, Math.Max(16L, (long)data.Length * sizeof(T)));
        b.Upload(data);
        return b.Pointer;
    }

    private DeviceBuffer Ensure(ref DeviceBuffer? buffer, long bytes)
    {
        if (buffer is null || buffer.Bytes < bytes)
        {
            // cudaFree waits for the device, so a queued kernel never sees the old buffer vanish.
            buffer?.Dispose();
            buffer = null;
            buffer = new DeviceBuffer(Math.Max(bytes, 4096), Device);
        }

        return buffer;
    }

    private void SynchronizeLocked() => CudaRuntime.Check(CudaRuntime.Native.CtxSynchronize(Ctx), "kvdb_ctx_synchronize");
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using KvDb.GpuRunner;
using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.TestKit;
using KvDb.Workload;

// GPU runner for the device machine (no .NET SDK there; published self-contained). Prints JSON lines:
//   --parity                 GPU-vs-CPU parity cases (CudaParity), scoring and top-k checks
//   --bench                  exact and gathered attention benchmark of a Llama-3-8B layer
//   --store                  the store's GPU tier: StoreGpuChecks (promotion/eviction/demotion parity) and
//                            store_gpu_exact timing vs the raw backend at --store-ctx tokens (default 131072; a list)
//   --auto                   AUTO on the device (GpuAutoAttention) over --auto-ctx tokens (default 1048576; a list), --auto-trials queries
//   --contexts 131072,1048576  --batches 1,8,32 (gathered_batch: requests per launch)  --iters 30  --fraction 0.02  --splits 0  --sdpa sdpa.jsonl  --out results.jsonl
var options = RunnerOptions.Parse(args);
using var output = options.OutPath is null ? null : new StreamWriter(options.OutPath, append: true);
void Emit(string line)
{
    Console.WriteLine(line);
    output?.WriteLine(line);
    output?.Flush();
}

if (!CudaRuntime.IsAvailable)
{
    Emit(Json.Line(("kind", "device"), ("available", false), ("reason", CudaRuntime.UnavailableReason)));
    return 3;
}

using var backend = new CudaAttentionBackend();
Emit(Json.Line(("kind", "device"), ("available", true), ("name", CudaRuntime.DeviceName()), ("library", CudaRuntime.LibraryPath), ("variant", Environment.GetEnvironmentVariable("KVDB_CUDA_ATTN_VARIANT") ?? "0")));
int failures = 0;
if (options.Parity)
{
    failures += ParityRun.Run(backend, Emit);
}

if (options.Bench)
{
    failures += new Benchmark(backend, options, Emit).Run();
}

if (options.Store)
{
    try
    {
        foreach (StoreCheck r in StoreGpuChecks.Run())
        {
            failures += r.Passed ? 0 : 1;
            Emit(Json.Line(("kind", "store_parity"), ("name", r.Name), ("tier", r.Tier), ("rel_l2_ref", r.RelL2Reference), ("max_lse_err", r.MaxLseError), ("rel_l2_cpu", r.RelL2Cpu), ("pass", r.Passed), ("detail", r.Detail)));
        }
    }
    catch (Exception e)
    {
        failures++;
        Emit(Json.Line(("kind", "store_parity"), ("name", "StoreGpuChecks"), ("pass", false), ("error", e.ToString())));
    }

    try
    {
        foreach (long ctx in options.StoreContexts)
        {
            failures += StoreBench.Run(ctx, Math.Max(options.Iterations, 50), Emit);
        }
    }
    catch (Exception e)
    {
        failures++;
        Emit(Json.Line(("kernel", "store_gpu_exact"), ("pass", false), ("error", e.ToString())));
    }
}

if (options.Auto)
{
    foreach (long ctx in options.AutoContexts)
    {
        try
        {
            failures += AutoBench.Run(backend, ctx, Math.Max(options.Iterations, 50), options.AutoTrials, Emit);
        }
        catch (Exception e)
        {
            failures++;
            Emit(Json.Line(("kind", "auto"), ("ctx", ctx), ("pass", false), ("error", e.ToString())));
        }
    }
}

Console.Error.WriteLine(failures == 0 ? "gpurunner: all checks passed" : $"gpurunner: {failures} checks FAILED");
return failures == 0 ? 0 : 1;

internal sealed record RunnerOptions(bool Parity, bool Bench, bool Store, bool Auto, long[] AutoContexts, int AutoTrials, long[] StoreContexts, long[] Contexts, int[] Batches, int Iterations, double Fraction, int Splits, string? SdpaPath, string? OutPath)
{
    public static RunnerOptions Parse(string[] args)
    {
        bool parity = false, bench = false, store = false, auto = false;
        long[] storeContexts = [131_072];
        long[] autoContexts = [1_048_576];
        int autoTrials = 8;
        long[] contexts = [32_768, 131_072, 1_048_576];
        int[] batches = [1, 8, 32];
        int iters = 30, splits = 0;
        double fraction = 0.02;
        string? sdpa = null, outPath = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--parity": parity = true; break;
                case "--bench": bench = true; break;
                case "--store": store = true; break;
                case "--auto": auto = true; break;
                case "--auto-ctx": autoContexts = [.. Next().Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture))]; break;
                case "--auto-trials": autoTrials = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--store-ctx": storeContexts = [.. Next().Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture))]; break;
                case "--contexts": contexts = [.. Next().Split(',').Select(s => long.Parse(s, CultureInfo.InvariantCulture))]; break;
                case "--batches": batches = [.. Next().Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))]; break;
                case "--iters": iters = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--fraction": fraction = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--splits": splits = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--sdpa": sdpa = Next(); break;
                case "--out": outPath = Next(); break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }

        if (!parity && !bench && !store && !auto)
        {
            parity = bench = store = true;
        }

        return new RunnerOptions(parity, bench, store, auto, autoContexts, autoTrials, storeContexts, contexts, batches, iters, fraction, splits, sdpa, outPath);
    }
}

internal static class ParityRun
{
    public static int Run(CudaAttentionBackend backend, Action<string> emit)
    {
        int failures = 0;
        foreach (ParityCase c in CudaParity.Cases())
        {
            try
            {
                ParityOutcome r = CudaParity.Run(backend, c);
                failures += r.Passed ? 0 : 1;
                emit(Json.Line(("kind", "parity"), ("name", c.Name), ("rel_l2_ref", r.RelL2Reference), ("max_lse_err", r.MaxLseError), ("rel_l2_cpu", r.RelL2Cpu), ("host_path_diff", r.HostPathMaxDiff), ("written", r.AllWritten), ("pass", r.Passed)));
            }
            catch (Exception e)
            {
                failures++;
                emit(Json.Line(("kind", "parity"), ("name", c.Name), ("pass", false), ("error", e.Message)));
            }
        }

        failures += RunChecks(backend, emit, "", CudaParity.RunScoring, CudaParity.RunTopK, CudaParity.RunBatched);

        // Gathered attention with its L2 prefetch off (the A/B setting of the benchmark): the gathered cases and the batched checks again.
        CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 0);
        try
        {
            foreach (ParityCase c in CudaParity.Cases().Where(c => c.Gathered))
            {
                ParityOutcome r = CudaParity.Run(backend, c);
                failures += r.Passed ? 0 : 1;
                emit(Json.Line(("kind", "parity"), ("name", c.Name + "_prefetch0"), ("rel_l2_ref", r.RelL2Reference), ("max_lse_err", r.MaxLseError), ("host_path_diff", r.HostPathMaxDiff), ("written", r.AllWritten), ("pass", r.Passed)));
            }

            failures += RunChecks(backend, emit, "_prefetch0", CudaParity.RunBatched);
        }
        finally
        {
            CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 1);
        }

        return failures;
    }

    private static int RunChecks(CudaAttentionBackend backend, Action<string> emit, string suffix, params Func<CudaAttentionBackend, IReadOnlyList<CheckOutcome>>[] checks)
    {
        int failures = 0;
        foreach (Func<CudaAttentionBackend, IReadOnlyList<CheckOutcome>> check in checks)
        {
            try
            {
                foreach (CheckOutcome r in check(backend))
                {
                    failures += r.Passed ? 0 : 1;
                    emit(Json.Line(("kind", "parity"), ("name", r.Name + suffix), ("max_err", r.MaxError), ("pass", r.Passed), ("detail", r.Detail)));
                }
            }
            catch (Exception e)
            {
                failures++;
                emit(Json.Line(("kind", "parity"), ("name", check.Method.Name + suffix), ("pass", false), ("error", e.ToString())));
            }
        }

        return failures;
    }
}

/// <summary>
/// Exact (dense) and gathered decode attention of one Llama-3-8B layer (32 query heads, 8 KV heads, d=128,
/// bf16, one query token) against the streaming-read bandwidth measured in the same run. Each timed
/// launch follows an L2 flush and sits between two events; p50 of the iterations is reported.
/// </summary>
internal sealed unsafe class Benchmark
{
    private const int Hq = 32;
    private const int Hkv = 8;
    private const int D = 128;
    private const int BlockCap = 64;
    private const int RowBytes = D * 2;

    private readonly CudaAttentionBackend _backend;
    private readonly RunnerOptions _o;
    private readonly Action<string> _emit;
    private readonly AttentionGeometry _g = new(Hq, Hkv, D, BlockCap, KvDType.BF16, 1f / MathF.Sqrt(D));
    private readonly Dictionary<long, double> _sdpa = [];
    private GpuEvent[] _starts = [];
    private GpuEvent[] _stops = [];

    public Benchmark(CudaAttentionBackend backend, RunnerOptions options, Action<string> emit)
    {
        _backend = backend;
        _o = options;
        _emit = emit;
        if (options.SdpaPath is not null && File.Exists(options.SdpaPath))
        {
            foreach (string line in File.ReadLines(options.SdpaPath))
            {
                if (string.IsNullOrWhiteSpace(line) || !line.TrimStart().StartsWith('{'))
                {
                    continue;
                }

                using JsonDocument doc = JsonDocument.Parse(line);
                JsonElement root = doc.RootElement;
                if (root.TryGetProperty("kind", out JsonElement kind) && kind.GetString() == "sdpa" && root.TryGetProperty("sdpa_us", out JsonElement us))
                {
                    _sdpa[root.GetProperty("ctx").GetInt64()] = us.GetDouble();
                }
            }
        }
    }

    public int Run()
    {
        int failures = 0;
        _starts = [.. Enumerable.Range(0, _o.Iterations).Select(_ => new GpuEvent())];
        _stops = [.. Enumerable.Range(0, _o.Iterations).Select(_ => new GpuEvent())];
        long maxCtx = _o.Contexts.Max();
        long regionRows = Hkv * maxCtx;
        using var keys = new DeviceBuffer(regionRows * RowBytes);
        using var values = new DeviceBuffer(regionRows * RowBytes);
        _backend.FillRandom(keys.Pointer, regionRows * D, KvDType.BF16, 1);
        _backend.FillRandom(values.Pointer, regionRows * D, KvDType.BF16, 2);

        // Reference bandwidth: one streaming read over ≥ 1 GiB, and a device-to-device copy (read + write).
        long readBytes = Math.Max(keys.Bytes, 1L << 30);
        using var readBuffer = keys.Bytes >= (1L << 30) ? null : new DeviceBuffer(readBytes);
        nint readPointer = readBuffer?.Pointer ?? keys.Pointer;
        double readUs = Median(Time(() => _backend.ReadBytes(readPointer, readBytes)));
        double referenceGbps = readBytes / (readUs * 1e-6) / 1e9;
        long copyBytes = Math.Min(keys.Bytes, 1L << 30);
        var copyTimes = new List<double>();
        for (int i = 0; i < 6; i++)
        {
            _backend.Synchronize();
            long t0 = Stopwatch.GetTimestamp();
            CudaRuntime.CopyDeviceToDevice(values.Pointer, keys.Pointer, copyBytes);
            CudaRuntime.Synchronize();
            copyTimes.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }

        double copyGbps = 2.0 * copyBytes / (Median([.. copyTimes.Skip(1)]) * 1e-6) / 1e9;
        _backend.FillRandom(values.Pointer, regionRows * D, KvDType.BF16, 2);
        _emit(Json.Line(("kind", "reference"), ("read_bytes", readBytes), ("read_us", readUs), ("read_gbps", referenceGbps), ("copy_bytes_rw", 2 * copyBytes), ("copy_gbps", copyGbps)));

        // The same K/V as blocks of 64 tokens in GPU slab slots, in shuffled slot order (a tier's blocks are scattered).
        long numBlocks = maxCtx / BlockCap;
        using var slabs = GpuSlabAllocator.ForBlocks(_g, long.MaxValue, slotsPerSlab: 256);
        ulong[] table = new ulong[numBlocks];
        var slots = new List<nint>();
        for (long b = 0; b < numBlocks; b++)
        {
            if (!slabs.TryAllocate(out nint slot))
            {
                throw new InvalidOperationException("slab budget exhausted");
            }

            slots.Add(slot);
        }

        var rng = new DeterministicRandom(12345);
        for (int i = slots.Count - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (slots[i], slots[j]) = (slots[j], slots[i]);
        }

        long copyStart = Stopwatch.GetTimestamp();
        long headBytes = (long)BlockCap * RowBytes;
        for (long b = 0; b < numBlocks; b++)
        {
            nint slot = slots[(int)b];
            table[b] = (ulong)slot;
            for (int h = 0; h < Hkv; h++)
            {
                long src = ((long)h * maxCtx + b * BlockCap) * RowBytes;
                CudaRuntime.CopyDeviceToDevice(slot + (nint)(h * headBytes), keys.Pointer + (nint)src, headBytes);
                CudaRuntime.CopyDeviceToDevice(slot + (nint)(_g.RegionBytes + h * headBytes), values.Pointer + (nint)src, headBytes);
            }
        }

        Console.Error.WriteLine($"gpurunner: built {numBlocks} blocks in {Stopwatch.GetElapsedTime(copyStart).TotalSeconds:F1} s");
        using var tableBuffer = new DeviceBuffer(table.Length * 8L);
        tableBuffer.Upload<ulong>(table);

        float[] q = new float[Hq * D];
        for (int i = 0; i < q.Length; i++)
        {
            q[i] = (float)rng.NextGaussian();
        }

        using var queries = new DeviceBuffer(q.Length * 4L);
        queries.Upload<float>(q);
        using var outA = new DeviceBuffer(Hq * D * 4L);
        using var lseA = new DeviceBuffer(Hq * 4L);
        using var outB = new DeviceBuffer(Hq * D * 4L);
        using var lseB = new DeviceBuffer(Hq * 4L);

        foreach (long ctx in _o.Contexts)
        {
            var contiguous = GpuKvSource.Contiguous(keys.Pointer, values.Pointer, ctx, maxCtx);
            var paged = GpuKvSource.Blocks(tableBuffer.Pointer, ctx);
            long denseBytes = 2L * Hkv * ctx * RowBytes;

            double exactUs = Median(Time(() => _backend.AttentionAsync(_g, contiguous, default, queries.Pointer, 1, 0, 0, outA.Pointer, lseA.Pointer, _o.Splits)));
            double? sdpaUs = _sdpa.TryGetValue(ctx, out double s) ? s : null;
            EmitCase("exact", "contiguous", ctx, exactUs, denseBytes, referenceGbps, sdpaUs);
            double pagedUs = Median(Time(() => _backend.AttentionAsync(_g, paged, default, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, _o.Splits)));
            EmitCase("exact", "blocks", ctx, pagedUs, denseBytes, referenceGbps, sdpaUs);
            failures += CheckSame($"exact_ctx{ctx}", outA, lseA, outB, lseB, 1e-5);

            // Gathered: fraction of the 64-token blocks per KV head, chosen independently per head, positions sorted.
            (int[] positions, int[] offsets, int maxPerHead) = Selection(ctx, _o.Fraction, rng);
            using var dPos = new DeviceBuffer(Math.Max(16, positions.Length * 4L));
            using var dOff = new DeviceBuffer(offsets.Length * 4L);
            dPos.Upload<int>(positions);
            dOff.Upload<int>(offsets);
            var selection = new GpuSelection(dPos.Pointer, dOff.Pointer, maxPerHead);
            long gatheredBytes = positions.Length * (2L * RowBytes + 4);
            double gPagedUs = Median(Time(() => _backend.AttentionAsync(_g, paged, selection, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, _o.Splits)));
            EmitCase("gathered", "blocks", ctx, gPagedUs, gatheredBytes, referenceGbps, null);
            double gContUs = Median(Time(() => _backend.AttentionAsync(_g, contiguous, selection, queries.Pointer, 1, 0, 0, outA.Pointer, lseA.Pointer, _o.Splits)));
            EmitCase("gathered", "contiguous", ctx, gContUs, gatheredBytes, referenceGbps, null);
            failures += CheckSame($"gathered_ctx{ctx}", outA, lseA, outB, lseB, 1e-5);
            failures += CheckGatheredAgainstReference(ctx, keys, values, maxCtx, q, positions, offsets, outB, lseB);
            CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 0);
            double gPagedOffUs = Median(Time(() => _backend.AttentionAsync(_g, paged, selection, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, _o.Splits)));
            CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 1);
            _emit(Json.Line(("kind", "gather_prefetch"), ("ctx", ctx), ("blocks_on_us", Math.Round(gPagedUs, 2)), ("blocks_off_us", Math.Round(gPagedOffUs, 2)), ("contiguous_us", Math.Round(gContUs, 2))));

            foreach (int batch in _o.Batches)
            {
                foreach ((string layoutName, GpuKvSource source) in new[] { ("contiguous", contiguous), ("blocks", paged) })
                {
                    failures += BatchCase(ctx, batch, layoutName, source, referenceGbps, rng);
                }
            }
            if (ctx == maxCtx)
            {
                // Where the gathered time goes: split count, and the floor of one 64-token block per KV head.
                var bySplits = new List<(string, object?)> { ("kind", "gathered_splits"), ("ctx", ctx) };
                foreach (int sp in new[] { 8, 16, 24, 33, 49, 98, 147 })
                {
                    bySplits.Add(($"blocks_s{sp}", Math.Round(Median(Time(() => _backend.AttentionAsync(_g, paged, selection, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, sp))), 2)));
                    bySplits.Add(($"contiguous_s{sp}", Math.Round(Median(Time(() => _backend.AttentionAsync(_g, contiguous, selection, queries.Pointer, 1, 0, 0, outA.Pointer, lseA.Pointer, sp))), 2)));
                }

                _emit(Json.Line([.. bySplits]));
                (int[] one, int[] oneOff, int oneMax) = Selection(ctx, 1.0 / (ctx / BlockCap), rng);
                dPos.Upload<int>(one);
                dOff.Upload<int>(oneOff);
                var tiny = new GpuSelection(dPos.Pointer, dOff.Pointer, oneMax);
                double floorUs = Median(Time(() => _backend.AttentionAsync(_g, paged, tiny, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, _o.Splits)));
                double floorS2Us = Median(Time(() => _backend.AttentionAsync(_g, paged, tiny, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, 2)));
                dOff.Upload<int>(new int[Hkv + 1]);
                var empty = new GpuSelection(dPos.Pointer, dOff.Pointer, 0);
                double emptyUs = Median(Time(() => _backend.AttentionAsync(_g, paged, empty, queries.Pointer, 1, 0, 0, outB.Pointer, lseB.Pointer, _o.Splits)));
                double zeroUs = Median(Time(() => _backend.AttentionAsync(_g, GpuKvSource.Contiguous(keys.Pointer, values.Pointer, 0, maxCtx), default, queries.Pointer, 1, 0, 0, outA.Pointer, lseA.Pointer, _o.Splits)));
                // Where the floor goes: an empty selection (launch, offsets, output write), one 64-token block per
                // head with one split (adds positions -> table -> K/V), the same with two splits (adds the merge).
                _emit(Json.Line(("kind", "gathered_floor"), ("ctx", ctx), ("rows_per_head", oneMax), ("p50_us", Math.Round(floorUs, 2)), ("splits2_us", Math.Round(floorS2Us, 2)),
                    ("empty_selection_us", Math.Round(emptyUs, 2)), ("dense_zero_tokens_us", Math.Round(zeroUs, 2))));

                // The same number of rows as the random selection, but the first blocks of each head: one
                // sequential stream per head. The gap to the random selection is DRAM/TLB locality, not the kernel.
                int seqRows = offsets[1] - offsets[0];
                int[] seq = [.. Enumerable.Range(0, Hkv).SelectMany(_ => Enumerable.Range(0, seqRows))];
                int[] seqOff = [.. Enumerable.Range(0, Hkv + 1).Select(h => h * seqRows)];
                dPos.Upload<int>(seq);
                dOff.Upload<int>(seqOff);
                var sequential = new GpuSelection(dPos.Pointer, dOff.Pointer, seqRows);
                double seqUs = Median(Time(() => _backend.AttentionAsync(_g, contiguous, sequential, queries.Pointer, 1, 0, 0, outA.Pointer, lseA.Pointer, _o.Splits)));
                _emit(Json.Line(("kind", "gathered_sequential"), ("ctx", ctx), ("rows_per_head", seqRows), ("p50_us", Math.Round(seqUs, 2)),
                    ("achieved_gbps", Math.Round(gatheredBytes / (seqUs * 1e-6) / 1e9, 1))));
            }
        }

        foreach (GpuEvent e in _starts.Concat(_stops))
        {
            e.Dispose();
        }

        return failures;
    }

    /// <summary>
    /// gathered_batch: <paramref name="batch"/> decode requests in one launch, each with its own queries, outputs and
    /// 2% selection of 64-token blocks per KV head. The requests share one K/V buffer (B contexts of 1M tokens do
    /// not fit in 80 GB) but their selections are disjoint, so no request reads a row another one read (no L2 reuse).
    /// </summary>
    private int BatchCase(long ctx, int batch, string layoutName, GpuKvSource source, double referenceGbps, DeterministicRandom rng)
    {
        int blocks = (int)(ctx / BlockCap);
        int pick = Math.Max(1, (int)Math.Round(blocks * _o.Fraction));
        if ((long)pick * batch > blocks)
        {
            _emit(Json.Line(("kernel", "gathered_batch"), ("batch", batch), ("ctx", ctx), ("layout", layoutName), ("skipped", "disjoint selections need more blocks")));
            return 0;
        }

        // Per KV head one shuffled block order; request r takes the r-th run of `pick` blocks (sorted).
        var perRequest = new List<int>[batch];
        var offsets = new int[batch][];
        for (int r = 0; r < batch; r++)
        {
            perRequest[r] = new List<int>(Hkv * pick * BlockCap);
            offsets[r] = new int[Hkv + 1];
        }

        int[] order = new int[blocks];
        for (int h = 0; h < Hkv; h++)
        {
            for (int i = 0; i < blocks; i++)
            {
                order[i] = i;
            }

            for (int i = blocks - 1; i > 0; i--)
            {
                int j = rng.NextInt(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }

            for (int r = 0; r < batch; r++)
            {
                int[] chosen = order.AsSpan(r * pick, pick).ToArray();
                Array.Sort(chosen);
                foreach (int b in chosen)
                {
                    for (int t = 0; t < BlockCap; t++)
                    {
                        perRequest[r].Add(b * BlockCap + t);
                    }
                }

                offsets[r][h + 1] = perRequest[r].Count;
            }
        }

        var buffers = new List<DeviceBuffer>();
        try
        {
            var requests = new GpuAttentionRequest[batch];
            long bytes = 0;
            float[] q = new float[Hq * D];
            for (int r = 0; r < batch; r++)
            {
                for (int i = 0; i < q.Length; i++)
                {
                    q[i] = (float)rng.NextGaussian();
                }

                DeviceBuffer dq = Add(buffers, new DeviceBuffer(q.Length * 4L));
                dq.Upload<float>(q);
                DeviceBuffer dPos = Add(buffers, new DeviceBuffer(perRequest[r].Count * 4L));
                dPos.Upload<int>(perRequest[r].ToArray());
                DeviceBuffer dOff = Add(buffers, new DeviceBuffer((Hkv + 1) * 4L));
                dOff.Upload<int>(offsets[r]);
                DeviceBuffer dOut = Add(buffers, new DeviceBuffer(Hq * D * 4L));
                DeviceBuffer dLse = Add(buffers, new DeviceBuffer(Hq * 4L));
                requests[r] = new GpuAttentionRequest(source, new GpuSelection(dPos.Pointer, dOff.Pointer, pick * BlockCap), dq.Pointer, dOut.Pointer, dLse.Pointer);
                bytes += perRequest[r].Count * (2L * RowBytes + 4);
            }

            using var gpuBatch = new GpuAttentionBatch(_g, requests, 1);
            double us = Median(Time(() => _backend.AttentionBatchAsync(gpuBatch, _o.Splits)));
            double gbps = bytes / (us * 1e-6) / 1e9;
            var fields = new List<(string, object?)>
            {
                ("kernel", "gathered_batch"), ("batch", batch), ("layout", layoutName), ("ctx", ctx), ("p50_us", Math.Round(us, 2)), ("bytes", bytes),
                ("achieved_gbps", Math.Round(gbps, 1)), ("reference_gbps", Math.Round(referenceGbps, 1)), ("ratio", Math.Round(gbps / referenceGbps, 3)),
                ("fraction", _o.Fraction), ("us_per_request", Math.Round(us / batch, 2)),
            };
            CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 0);
            double offUs = Median(Time(() => _backend.AttentionBatchAsync(gpuBatch, _o.Splits)));
            CudaRuntime.SetOption(CudaKernelOption.GatherPrefetch, 1);
            fields.Add(("prefetch_off_us", Math.Round(offUs, 2)));

            _emit(Json.Line([.. fields]));

            // The first and the last request against single-request launches (automatic splits on both sides,
            // which differ, so agreement is to rounding).
            _backend.AttentionBatchAsync(gpuBatch);
            _backend.Synchronize();
            double worst = 0;
            foreach (int r in new[] { 0, batch - 1 })
            {
                float[] a = new float[Hq * D], la = new float[Hq], b = new float[Hq * D], lb = new float[Hq];
                CudaRuntime.CopyToHost<float>(a, requests[r].Output);
                CudaRuntime.CopyToHost<float>(la, requests[r].Lse);
                _backend.AttentionAsync(_g, source, requests[r].Selection, requests[r].Queries, 1, 0, 0, requests[r].Output, requests[r].Lse);
                _backend.Synchronize();
                CudaRuntime.CopyToHost<float>(b, requests[r].Output);
                CudaRuntime.CopyToHost<float>(lb, requests[r].Lse);
                for (int i = 0; i < a.Length; i++)
                {
                    worst = Math.Max(worst, Math.Abs((double)a[i] - b[i]));
                }

                for (int i = 0; i < la.Length; i++)
                {
                    worst = Math.Max(worst, Math.Abs((double)la[i] - lb[i]));
                }
            }

            bool pass = worst <= 1e-5;
            _emit(Json.Line(("kind", "batch_check"), ("name", $"batch{batch}_{layoutName}_ctx{ctx}"), ("max_diff_vs_single", worst), ("pass", pass)));
            return pass ? 0 : 1;
        }
        finally
        {
            foreach (DeviceBuffer b in buffers)
            {
                b.Dispose();
            }
        }
    }

    private static DeviceBuffer Add(List<DeviceBuffer> list, DeviceBuffer buffer)
    {
        list.Add(buffer);
        return buffer;
    }

    private void EmitCase(string kernel, string layout, long ctx, double us, long bytes, double referenceGbps, double? sdpaUs)
    {
        double gbps = bytes / (us * 1e-6) / 1e9;
        var fields = new List<(string, object?)>
        {
            ("kernel", kernel), ("layout", layout), ("ctx", ctx), ("p50_us", Math.Round(us, 2)), ("bytes", bytes),
            ("achieved_gbps", Math.Round(gbps, 1)), ("reference_gbps", Math.Round(referenceGbps, 1)), ("ratio", Math.Round(gbps / referenceGbps, 3)),
        };
        if (kernel == "gathered")
        {
            fields.Add(("fraction", _o.Fraction));
        }

        if (sdpaUs is double s)
        {
            fields.Add(("sdpa_us", Math.Round(s, 2)));
            fields.Add(("vs_sdpa", Math.Round(us / s, 3)));
        }

        _emit(Json.Line([.. fields]));
    }

    private int CheckSame(string name, DeviceBuffer outA, DeviceBuffer lseA, DeviceBuffer outB, DeviceBuffer lseB, double tolerance)
    {
        _backend.Synchronize();
        float[] a = new float[Hq * D], b = new float[Hq * D], la = new float[Hq], lb = new float[Hq];
        outA.Download<float>(a);
        outB.Download<float>(b);
        lseA.Download<float>(la);
        lseB.Download<float>(lb);
        double worst = 0;
        for (int i = 0; i < a.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs((double)a[i] - b[i]));
        }

        for (int i = 0; i < la.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs((double)la[i] - lb[i]));
        }

        bool pass = worst <= tolerance && !a.Any(float.IsNaN) && !la.Any(float.IsNaN);
        _emit(Json.Line(("kind", "layout_check"), ("name", name), ("max_diff_contiguous_vs_blocks", worst), ("pass", pass)));
        return pass ? 0 : 1;
    }

    /// <summary>f64 reference of the gathered result over rows downloaded from the device.</summary>
    private int CheckGatheredAgainstReference(long ctx, DeviceBuffer keys, DeviceBuffer values, long maxCtx, float[] q, int[] positions, int[] offsets, DeviceBuffer outB, DeviceBuffer lseB)
    {
        _backend.Synchronize();
        float[] gpu = new float[Hq * D];
        float[] gpuLse = new float[Hq];
        outB.Download<float>(gpu);
        lseB.Download<float>(gpuLse);
        var expected = new double[Hq * D];
        var expectedLse = new double[Hq];
        int group = Hq / Hkv;
        ushort[] run = new ushort[BlockCap * D];
        for (int h = 0; h < Hkv; h++)
        {
            int count = offsets[h + 1] - offsets[h];
            var k = new float[count * D];
            var v = new float[count * D];
            // The selection is whole 64-token blocks, so each run of BlockCap positions is contiguous.
            for (int j = 0; j < count; j += BlockCap)
            {
                long p = positions[offsets[h] + j];
                long off = ((long)h * maxCtx + p) * RowBytes;
                CudaRuntime.CopyToHost<ushort>(run, keys.Pointer + (nint)off);
                ElementConversion.BFloat16ToSingle(run, k.AsSpan(j * D, BlockCap * D));
                CudaRuntime.CopyToHost<ushort>(run, values.Pointer + (nint)off);
                ElementConversion.BFloat16ToSingle(run, v.AsSpan(j * D, BlockCap * D));
            }

            for (int g = 0; g < group; g++)
            {
                int qh = h * group + g;
                (double[] o, double[] l) = ReferenceAttention.Compute(k, v, q.AsSpan(qh * D, D), 1, 1, 1, D, _g.Scale);
                o.CopyTo(expected, qh * D);
                expectedLse[qh] = l[0];
            }
        }

        double rel = ReferenceAttention.RelativeL2(gpu, expected);
        double lseErr = ReferenceAttention.MaxAbsError(gpuLse, expectedLse);
        bool pass = rel <= CudaParity.Tolerance && lseErr <= CudaParity.Tolerance;
        _emit(Json.Line(("kind", "parity"), ("name", $"gathered_bench_ctx{ctx}_vs_f64"), ("rel_l2_ref", rel), ("max_lse_err", lseErr), ("pass", pass)));
        return pass ? 0 : 1;
    }

    private static (int[] Positions, int[] Offsets, int MaxPerHead) Selection(long ctx, double fraction, DeterministicRandom rng)
    {
        int blocks = (int)(ctx / BlockCap);
        int pick = Math.Max(1, (int)Math.Round(blocks * fraction));
        var positions = new List<int>();
        int[] offsets = new int[Hkv + 1];
        for (int h = 0; h < Hkv; h++)
        {
            var chosen = new SortedSet<int>();
            while (chosen.Count < pick)
            {
                chosen.Add(rng.NextInt(blocks));
            }

            foreach (int b in chosen)
            {
                for (int r = 0; r < BlockCap; r++)
                {
                    positions.Add(b * BlockCap + r);
                }
            }

            offsets[h + 1] = positions.Count;
        }

        return ([.. positions], offsets, pick * BlockCap);
    }

    private double[] Time(Action launch)
    {
        for (int i = 0; i < 3; i++)
        {
            launch();
        }

        _backend.Synchronize();
        for (int i = 0; i < _o.Iterations; i++)
        {
            _backend.FlushL2();
            _backend.Record(_starts[i]);
            launch();
            _backend.Record(_stops[i]);
        }

        _backend.Synchronize();
        var us = new double[_o.Iterations];
        for (int i = 0; i < us.Length; i++)
        {
            us[i] = GpuEvent.ElapsedMilliseconds(_starts[i], _stops[i]) * 1000.0;
        }

        return us;
    }

    private static double Median(double[] xs)
    {
        double[] s = [.. xs.Order()];
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}

/// <summary>One-line JSON objects, invariant culture.</summary>
internal static class Json
{
    public static string Line(params (string Key, object? Value)[] fields)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            foreach ((string key, object? value) in fields)
            {
                switch (value)
                {
                    case null: w.WriteNull(key); break;
                    case string s: w.WriteString(key, s); break;
                    case bool b: w.WriteBoolean(key, b); break;
                    case int i: w.WriteNumber(key, i); break;
                    case long l: w.WriteNumber(key, l); break;
                    case double d when double.IsFinite(d): w.WriteNumber(key, d); break;
                    case double d: w.WriteString(key, d.ToString(CultureInfo.InvariantCulture)); break;
                    default: w.WriteString(key, Convert.ToString(value, CultureInfo.InvariantCulture)); break;
                }
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}

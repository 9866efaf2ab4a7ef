using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.Workload;

namespace KvDb.TestKit;

/// <summary>One GPU-vs-CPU attention parity case.</summary>
public sealed record ParityCase(
    string Name,
    KvDType DType,
    int NumQueryHeads,
    int NumKvHeads,
    int HeadDim,
    int Tokens,
    int NumQueries,
    long ExcludeStart,
    long ExcludeEnd,
    GpuKvLayout Layout,
    int BlockCapacity,
    bool Gathered)
{
    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>What one parity case measured. Errors are against the f64 reference on the same (rounded) inputs.</summary>
public sealed record ParityOutcome(
    ParityCase Case,
    double RelL2Reference,
    double MaxLseError,
    double RelL2Cpu,
    double HostPathMaxDiff,
    bool AllWritten,
    double Tolerance)
{
    /// <summary>Every output written, GPU within tolerance of the f64 reference and of the CPU kernel, host path identical.</summary>
    public bool Passed => AllWritten && RelL2Reference <= Tolerance && MaxLseError <= Tolerance && RelL2Cpu <= Tolerance && HostPathMaxDiff == 0;
}

/// <summary>Outcome of a scoring, top-k, tier or batched parity case.</summary>
public sealed record CheckOutcome(string Name, double MaxError, bool Passed)
{
    /// <summary>What was compared, for the report.</summary>
    public string Detail { get; init; } = "";
}

/// <summary>
/// GPU parity cases shared by tests/KvDb.Kernels.Tests (which skip without CUDA) and the GPU runner
/// (which runs them on the device machine, where there is no .NET SDK). Each case builds a synthetic
/// layer, runs the CUDA kernel through the device-resident API (outputs poisoned with NaN first) and
/// the host API, and compares against <see cref="ReferenceAttention"/> (f64) and, for dense cases,
/// <see cref="ExactAttentionKernel"/>.
/// </summary>
public static unsafe class CudaParity
{
    /// <summary>f32 arithmetic over f32-widened inputs lands far below this (METHOD.md: f32 ≪ 1e-3).</summary>
    public const double Tolerance = 1e-4;

    /// <summary>
    /// Batched vs single-request launch with the same split count: the same arithmetic in the same order,
    /// compiled in two kernel instantiations (any difference would be an FMA-contraction choice, ~1 ulp).
    /// </summary>
    public const double BatchVsSingleTolerance = 1e-6;

    /// <summary>The matrix: dtypes × GQA 1/2/4/8 × head_dim 64/128 × lengths (incl. non-multiples of the block) × layouts × exclude ranges.</summary>
    public static IReadOnlyList<ParityCase> Cases()
    {
        var list = new List<ParityCase>();
        KvDType[] dtypes = [KvDType.BF16, KvDType.F16, KvDType.F32];
        (int Hq, int Hkv)[] heads = [(8, 8), (8, 4), (16, 4), (32, 4)];
        int[] dims = [64, 128];
        int[] lengths = [1, 200, 1000, 4099];
        int i = 0;
        foreach (KvDType dt in dtypes)
        {
            foreach ((int hq, int hkv) in heads)
            {
                foreach (int d in dims)
                {
                    // Mixed so that every dtype, head shape and dim meets both layouts, both modes and several lengths.
                    int n = lengths[(i + i / 4) % lengths.Length];
                    bool gathered = i % 3 == 1;
                    GpuKvLayout layout = (i + i / 2) % 2 == 0 ? GpuKvLayout.Contiguous : GpuKvLayout.Blocks;
                    int cap = (i / 3) % 4 == 2 ? 48 : 64;
                    (long xs, long xe) = (i % 5) switch
                    {
                        1 => (0L, 3L),
                        2 => (n / 3, n / 2 + 1),
                        3 => (n - 7, n + 100),
                        _ => (0L, 0L),
                    };
                    int nq = i % 7 == 3 ? 2 : 1;
                    string name = $"{KvDTypeInfo.Name(dt)}_hq{hq}_hkv{hkv}_d{d}_n{n}_{(gathered ? "gathered" : "dense")}_{layout.ToString().ToLowerInvariant()}{cap}_x{xs}-{xe}_q{nq}";
                    list.Add(new ParityCase(name, dt, hq, hkv, d, n, nq, xs, xe, layout, cap, gathered));
                    i++;
                }
            }
        }

        // Edge cases: the Llama-3-8B layer shape on both layouts, an empty context, a fully excluded one.
        list.Add(new ParityCase("llama_bf16_dense_contiguous_n5000", KvDType.BF16, 32, 8, 128, 5000, 1, 0, 0, GpuKvLayout.Contiguous, 64, false));
        list.Add(new ParityCase("llama_bf16_dense_blocks_n5000_x100-164", KvDType.BF16, 32, 8, 128, 5000, 1, 100, 164, GpuKvLayout.Blocks, 64, false));
        list.Add(new ParityCase("llama_bf16_gathered_blocks_n5000", KvDType.BF16, 32, 8, 128, 5000, 1, 0, 0, GpuKvLayout.Blocks, 64, true));
        list.Add(new ParityCase("empty_context", KvDType.BF16, 32, 8, 128, 0, 1, 0, 0, GpuKvLayout.Contiguous, 64, false));
        list.Add(new ParityCase("all_excluded", KvDType.F16, 16, 4, 64, 300, 1, 0, 300, GpuKvLayout.Blocks, 64, false));
        list.Add(new ParityCase("two_queries_f32_blocks48", KvDType.F32, 16, 4, 128, 777, 2, 5, 9, GpuKvLayout.Blocks, 48, false));
        return list;
    }

    /// <summary>Runs one case on <paramref name="backend"/>.</summary>
    public static ParityOutcome Run(CudaAttentionBackend backend, ParityCase c)
    {
        int hq = c.NumQueryHeads;
        int hkv = c.NumKvHeads;
        int d = c.HeadDim;
        int n = c.Tokens;
        var geometry = new AttentionGeometry(hq, hkv, d, c.BlockCapacity, c.DType, 1f / MathF.Sqrt(d));
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions
        {
            Tokens = n,
            NumKvHeads = hkv,
            NumQueryHeads = hq,
            HeadDim = d,
            Seed = (ulong)StableHash.Of(c.Name),
        });
        byte[] keyBytes = workload.KeyBytes(c.DType, 0, n);
        byte[] valueBytes = workload.ValueBytes(c.DType, 0, n);
        float[] keys = Widen(c.DType, keyBytes);
        float[] values = Widen(c.DType, valueBytes);
        float[] queries = workload.Queries(c.NumQueries, 7);

        int[][] rows = c.Gathered ? Selection(c, n) : [];
        (double[] refOut, double[] refLse) = c.Gathered
            ? GatheredReference(keys, values, queries, c, rows, geometry.Scale)
            : ReferenceAttention.Compute(keys, values, queries, c.NumQueries, hq, hkv, d, geometry.Scale, c.ExcludeStart, c.ExcludeEnd);

        using var host = new NativeKvBlocks(geometry, keyBytes, valueBytes, NativeKvBlocks.ZeroPadding);
        float[] cpuOut = new float[queries.Length];
        float[] cpuLse = new float[c.NumQueries * hq];
        if (!c.Gathered)
        {
            ExactAttentionKernel.Run(geometry, host.Blocks, queries, c.NumQueries, c.ExcludeStart, c.ExcludeEnd, cpuOut, cpuLse);
        }

        using var device = new DeviceLayer(geometry, host, keyBytes, valueBytes, n, c.Layout);
        int[] positions = [.. rows.SelectMany(r => r)];
        int[] offsets = new int[hkv + 1];
        for (int h = 0; h < hkv && c.Gathered; h++)
        {
            offsets[h + 1] = offsets[h] + rows[h].Length;
        }

        // Device-resident path, outputs poisoned with NaN.
        float[] gpuOut = new float[queries.Length];
        float[] gpuLse = new float[cpuLse.Length];
        using (var dq = new DeviceBuffer(Math.Max(16, queries.Length * 4L)))
        using (var dOut = new DeviceBuffer(Math.Max(16, gpuOut.Length * 4L)))
        using (var dLse = new DeviceBuffer(Math.Max(16, gpuLse.Length * 4L)))
        using (var dPos = new DeviceBuffer(Math.Max(16, positions.Length * 4L)))
        using (var dOff = new DeviceBuffer(Math.Max(16, offsets.Length * 4L)))
        {
            dq.Upload<float>(queries);
            CudaRuntime.Memset(dOut.Pointer, 0xFF, dOut.Bytes);
            CudaRuntime.Memset(dLse.Pointer, 0xFF, dLse.Bytes);
            GpuSelection selection = default;
            if (c.Gathered)
            {
                dPos.Upload<int>(positions);
                dOff.Upload<int>(offsets);
                selection = new GpuSelection(dPos.Pointer, dOff.Pointer, rows.Max(r => r.Length));
            }

            backend.AttentionAsync(geometry, device.Source, selection, dq.Pointer, c.NumQueries, c.ExcludeStart, c.ExcludeEnd, dOut.Pointer, dLse.Pointer);
            backend.Synchronize();
            dOut.Download<float>(gpuOut);
            dLse.Download<float>(gpuLse);
        }

        // Host path: same kernel through staging buffers; must agree bit for bit.
        float[] hostOut = new float[queries.Length];
        float[] hostLse = new float[cpuLse.Length];
        if (c.Gathered)
        {
            backend.GatheredAttention(geometry, device.Source, positions, offsets, queries, c.NumQueries, c.ExcludeStart, c.ExcludeEnd, hostOut, hostLse);
        }
        else
        {
            backend.Attention(geometry, device.Source, queries, c.NumQueries, c.ExcludeStart, c.ExcludeEnd, hostOut, hostLse);
        }

        bool written = !gpuOut.Any(float.IsNaN) && !gpuLse.Any(float.IsNaN);
        double relRef = ReferenceAttention.RelativeL2(gpuOut, refOut);
        double lseErr = ReferenceAttention.MaxAbsError(gpuLse, refLse);
        double relCpu = c.Gathered ? 0 : VectorErrors.RelativeL2(gpuOut, cpuOut);
        double hostDiff = MaxDiff(gpuOut, hostOut, gpuLse, hostLse);
        return new ParityOutcome(c, relRef, lseErr, relCpu, hostDiff, written, Tolerance);
    }

    /// <summary>Scoring parity: GPU scale·q·k against f64 for a dense and a gathered selection.</summary>
    public static IReadOnlyList<CheckOutcome> RunScoring(CudaAttentionBackend backend)
    {
        var results = new List<CheckOutcome>();
        (string Name, KvDType DType, int Hq, int Hkv, int D, int N, GpuKvLayout Layout, int Cap, bool Gathered)[] cases =
        [
            ("score_bf16_dense_contiguous", KvDType.BF16, 32, 8, 128, 1000, GpuKvLayout.Contiguous, 64, false),
            ("score_f16_gathered_blocks48", KvDType.F16, 16, 4, 64, 700, GpuKvLayout.Blocks, 48, true),
            ("score_f32_gathered_contiguous", KvDType.F32, 8, 8, 128, 333, GpuKvLayout.Contiguous, 64, true),
        ];
        foreach (var s in cases)
        {
            var geometry = new AttentionGeometry(s.Hq, s.Hkv, s.D, s.Cap, s.DType, 1f / MathF.Sqrt(s.D));
            var pc = new ParityCase(s.Name, s.DType, s.Hq, s.Hkv, s.D, s.N, 1, 10, 20, s.Layout, s.Cap, s.Gathered);
            var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = s.N, NumKvHeads = s.Hkv, NumQueryHeads = s.Hq, HeadDim = s.D, Seed = 99 });
            byte[] kb = workload.KeyBytes(s.DType, 0, s.N);
            byte[] vb = workload.ValueBytes(s.DType, 0, s.N);
            float[] keys = Widen(s.DType, kb);
            float[] queries = workload.Queries(1, 3);
            int[][] rows = s.Gathered ? Selection(pc, s.N) : [.. Enumerable.Range(0, s.Hkv).Select(_ => Enumerable.Range(0, s.N).ToArray())];
            int[] positions = s.Gathered ? [.. rows.SelectMany(r => r)] : [];
            int[] offsets = s.Gathered ? new int[s.Hkv + 1] : [];
            for (int h = 0; h < s.Hkv && s.Gathered; h++)
            {
                offsets[h + 1] = offsets[h] + rows[h].Length;
            }

            using var host = new NativeKvBlocks(geometry, kb, vb, NativeKvBlocks.ZeroPadding);
            using var device = new DeviceLayer(geometry, host, kb, vb, s.N, s.Layout);
            long stride = s.N + 3;
            float[] scores = new float[s.Hq * stride];
            backend.Score(geometry, device.Source, positions, offsets, queries, 1, pc.ExcludeStart, pc.ExcludeEnd, scores, stride);
            double worst = 0;
            bool ok = true;
            int group = s.Hq / s.Hkv;
            for (int q = 0; q < s.Hq; q++)
            {
                int[] r = rows[q / group];
                for (int j = 0; j < r.Length; j++)
                {
                    int p = r[j];
                    float got = scores[q * stride + j];
                    if (p >= pc.ExcludeStart && p < pc.ExcludeEnd)
                    {
                        ok &= float.IsNegativeInfinity(got);
                        continue;
                    }

                    double dot = 0;
                    for (int e = 0; e < s.D; e++)
                    {
                        dot += (double)queries[q * s.D + e] * keys[((long)p * s.Hkv + q / group) * s.D + e];
                    }

                    double expected = dot * geometry.Scale;
                    worst = Math.Max(worst, Math.Abs(got - expected) / (1 + Math.Abs(expected)));
                }
            }

            results.Add(new CheckOutcome(s.Name, worst, ok && worst <= 1e-4));
        }

        return results;
    }

    /// <summary>
    /// Batched attention (<see cref="CudaAttentionBackend.AttentionBatchAsync"/>): requests of different lengths,
    /// each with its own K/V, selection, queries and exclude range, in one launch. Each member is checked
    /// against the f64 reference (automatic splits) and against a single-request <see cref="CudaAttentionBackend.AttentionAsync"/>
    /// call with the same explicit split count (which must agree to <see cref="BatchVsSingleTolerance"/>).
    /// </summary>
    public static IReadOnlyList<CheckOutcome> RunBatched(CudaAttentionBackend backend)
    {
        var results = new List<CheckOutcome>();
        (string Name, KvDType DType, int Hq, int Hkv, int D, GpuKvLayout Layout, int Cap, bool Gathered, int Nq, int[] Lengths)[] cases =
        [
            ("batch_bf16_llama_gathered_blocks64", KvDType.BF16, 32, 8, 128, GpuKvLayout.Blocks, 64, true, 1, [1000, 4099, 200, 0, 777]),
            ("batch_f16_gathered_contiguous_q2", KvDType.F16, 16, 4, 64, GpuKvLayout.Contiguous, 64, true, 2, [300, 1000, 1]),
            ("batch_f32_gathered_blocks48", KvDType.F32, 8, 8, 128, GpuKvLayout.Blocks, 48, true, 1, [500, 97]),
            ("batch_f32_dense_contiguous", KvDType.F32, 8, 8, 128, GpuKvLayout.Contiguous, 64, false, 1, [1, 300, 1000]),
            ("batch_bf16_dense_blocks48_q2", KvDType.BF16, 32, 8, 128, GpuKvLayout.Blocks, 48, false, 2, [5000, 100]),
        ];
        foreach (var bc in cases)
        {
            var geometry = new AttentionGeometry(bc.Hq, bc.Hkv, bc.D, bc.Cap, bc.DType, 1f / MathF.Sqrt(bc.D));
            int members = bc.Lengths.Length;
            var disposables = new List<IDisposable>();
            try
            {
                var requests = new GpuAttentionRequest[members];
                var refs = new (double[] Output, double[] Lse)[members];
                var outputs = new (DeviceBuffer Output, DeviceBuffer Lse)[members];
                var singles = new (GpuKvSource Kv, GpuSelection Selection, nint Queries, long Xs, long Xe)[members];
                for (int i = 0; i < members; i++)
                {
                    int n = bc.Lengths[i];
                    (long xs, long xe) = i == 1 ? (n / 3, n / 2 + 1) : (0L, 0L);
                    var pc = new ParityCase($"{bc.Name}_r{i}", bc.DType, bc.Hq, bc.Hkv, bc.D, n, bc.Nq, xs, xe, bc.Layout, bc.Cap, bc.Gathered);
                    var workload = new SyntheticWorkload(new SyntheticWorkloadOptions
                    {
                        Tokens = n,
                        NumKvHeads = bc.Hkv,
                        NumQueryHeads = bc.Hq,
                        HeadDim = bc.D,
                        Seed = (ulong)StableHash.Of(pc.Name),
                    });
                    byte[] kb = workload.KeyBytes(bc.DType, 0, n);
                    byte[] vb = workload.ValueBytes(bc.DType, 0, n);
                    float[] keys = Widen(bc.DType, kb);
                    float[] values = Widen(bc.DType, vb);
                    float[] queries = workload.Queries(bc.Nq, (ulong)(7 + i));
                    int[][] rows = bc.Gathered ? Selection(pc, n) : [];
                    refs[i] = bc.Gathered
                        ? GatheredReference(keys, values, queries, pc, rows, geometry.Scale)
                        : ReferenceAttention.Compute(keys, values, queries, bc.Nq, bc.Hq, bc.Hkv, bc.D, geometry.Scale, xs, xe);

                    var host = new NativeKvBlocks(geometry, kb, vb, NativeKvBlocks.ZeroPadding);
                    disposables.Add(host);
                    var layer = new DeviceLayer(geometry, host, kb, vb, n, bc.Layout);
                    disposables.Add(layer);
                    var dq = new DeviceBuffer(Math.Max(16, queries.Length * 4L));
                    disposables.Add(dq);
                    dq.Upload<float>(queries);
                    var dOut = new DeviceBuffer(Math.Max(16, queries.Length * 4L));
                    var dLse = new DeviceBuffer(Math.Max(16, bc.Nq * bc.Hq * 4L));
                    disposables.Add(dOut);
                    disposables.Add(dLse);
                    outputs[i] = (dOut, dLse);
                    GpuSelection selection = default;
                    if (bc.Gathered)
                    {
                        int[] positions = [.. rows.SelectMany(r => r)];
                        int[] offsets = new int[bc.Hkv + 1];
                        for (int h = 0; h < bc.Hkv; h++)
                        {
                            offsets[h + 1] = offsets[h] + rows[h].Length;
                        }

                        var dPos = new DeviceBuffer(Math.Max(16, positions.Length * 4L));
                        var dOff = new DeviceBuffer(offsets.Length * 4L);
                        disposables.Add(dPos);
                        disposables.Add(dOff);
                        dPos.Upload<int>(positions);
                        dOff.Upload<int>(offsets);
                        selection = new GpuSelection(dPos.Pointer, dOff.Pointer, rows.Max(r => r.Length));
                    }

                    requests[i] = new GpuAttentionRequest(layer.Source, selection, dq.Pointer, dOut.Pointer, dLse.Pointer, xs, xe);
                    singles[i] = (layer.Source, selection, dq.Pointer, xs, xe);
                }

                using var batch = new GpuAttentionBatch(geometry, requests, bc.Nq);
                int outFloats = bc.Nq * bc.Hq * bc.D;
                int lseFloats = bc.Nq * bc.Hq;

                // 1. Automatic splits vs f64, outputs poisoned with NaN first.
                var batchOut = new float[members][];
                var batchLse = new float[members][];
                foreach ((DeviceBuffer o, DeviceBuffer l) in outputs)
                {
                    CudaRuntime.Memset(o.Pointer, 0xFF, o.Bytes);
                    CudaRuntime.Memset(l.Pointer, 0xFF, l.Bytes);
                }

                backend.AttentionBatchAsync(batch);
                backend.Synchronize();
                for (int i = 0; i < members; i++)
                {
                    batchOut[i] = new float[outFloats];
                    batchLse[i] = new float[lseFloats];
                    outputs[i].Output.Download<float>(batchOut[i]);
                    outputs[i].Lse.Download<float>(batchLse[i]);
                }

                // 2. The same explicit split count, batched and one request at a time.
                const int Splits = 3;
                var fixedOut = new float[members][];
                var fixedLse = new float[members][];
                backend.AttentionBatchAsync(batch, Splits);
                backend.Synchronize();
                for (int i = 0; i < members; i++)
                {
                    fixedOut[i] = new float[outFloats];
                    fixedLse[i] = new float[lseFloats];
                    outputs[i].Output.Download<float>(fixedOut[i]);
                    outputs[i].Lse.Download<float>(fixedLse[i]);
                }

                for (int i = 0; i < members; i++)
                {
                    var (kv, selection, q, xs, xe) = singles[i];
                    CudaRuntime.Memset(outputs[i].Output.Pointer, 0xFF, outputs[i].Output.Bytes);
                    CudaRuntime.Memset(outputs[i].Lse.Pointer, 0xFF, outputs[i].Lse.Bytes);
                    backend.AttentionAsync(geometry, kv, selection, q, bc.Nq, xs, xe, outputs[i].Output.Pointer, outputs[i].Lse.Pointer, Splits);
                    backend.Synchronize();
                    float[] singleOut = new float[outFloats];
                    float[] singleLse = new float[lseFloats];
                    outputs[i].Output.Download<float>(singleOut);
                    outputs[i].Lse.Download<float>(singleLse);

                    bool written = !batchOut[i].Any(float.IsNaN) && !batchLse[i].Any(float.IsNaN);
                    double rel = ReferenceAttention.RelativeL2(batchOut[i], refs[i].Output);
                    double lseErr = ReferenceAttention.MaxAbsError(batchLse[i], refs[i].Lse);
                    double vsSingle = MaxAbsDiff(fixedOut[i], singleOut, fixedLse[i], singleLse);
                    bool pass = written && rel <= Tolerance && lseErr <= Tolerance && vsSingle <= BatchVsSingleTolerance;
                    results.Add(new CheckOutcome($"{bc.Name}_r{i}_n{bc.Lengths[i]}", Math.Max(Math.Max(rel, lseErr), vsSingle), pass)
                    {
                        Detail = $"relL2 vs f64 {rel:E2}, lse err {lseErr:E2}, max diff vs single call (splits {Splits}) {vsSingle:E2}, written {written}",
                    });
                }
            }
            finally
            {
                foreach (IDisposable d in Enumerable.Reverse(disposables))
                {
                    d.Dispose();
                }
            }
        }

        return results;
    }

    /// <summary>Top-k parity: GPU selection and order against a CPU sort on random values.</summary>
    public static IReadOnlyList<CheckOutcome> RunTopK(CudaAttentionBackend backend)
    {
        var results = new List<CheckOutcome>();
        foreach ((int n, int k) in new[] { (1000, 1), (1000, 17), (5000, 256), (70000, 1000), (4096, 4096) })
        {
            const int rowsCount = 3;
            var rng = new DeterministicRandom((ulong)(n * 31 + k));
            float[] values = new float[rowsCount * n];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = (float)(rng.NextGaussian() * 3);
            }

            float[] topValues = new float[rowsCount * k];
            int[] topIndices = new int[rowsCount * k];
            backend.TopK(values, rowsCount, n, k, topValues, topIndices);
            bool ok = true;
            for (int r = 0; r < rowsCount; r++)
            {
                int[] order = [.. Enumerable.Range(0, n).OrderByDescending(i => values[r * n + i]).ThenBy(i => i)];
                for (int i = 0; i < k; i++)
                {
                    ok &= topIndices[r * k + i] == order[i] && topValues[r * k + i] == values[r * n + order[i]];
                }
            }

            results.Add(new CheckOutcome($"topk_n{n}_k{k}", ok ? 0 : 1, ok));
        }

        return results;
    }

    /// <summary>Per KV head, a selection of positions: runs of consecutive tokens in random order, one head empty.</summary>
    public static int[][] Selection(ParityCase c, int n)
    {
        var rng = new DeterministicRandom((ulong)StableHash.Of(c.Name) ^ 0xABCDEF);
        var rows = new int[c.NumKvHeads][];
        for (int h = 0; h < c.NumKvHeads; h++)
        {
            if (n == 0 || (h == 1 && c.NumKvHeads > 1))
            {
                rows[h] = [];
                continue;
            }

            var chosen = new HashSet<int>();
            int want = 1 + rng.NextInt(Math.Max(1, n / 3));
            while (chosen.Count < want)
            {
                int start = rng.NextInt(n);
                int run = 1 + rng.NextInt(20);
                for (int p = start; p < Math.Min(n, start + run) && chosen.Count < want; p++)
                {
                    chosen.Add(p);
                }
            }

            int[] list = [.. chosen];
            // Shuffle: the kernels must not rely on sorted positions.
            for (int i = list.Length - 1; i > 0; i--)
            {
                int j = rng.NextInt(i + 1);
                (list[i], list[j]) = (list[j], list[i]);
            }

            rows[h] = list;
        }

        return rows;
    }

    private static (double[] Output, double[] Lse) GatheredReference(float[] keys, float[] values, float[] queries, ParityCase c, int[][] rows, double scale)
    {
        int hq = c.NumQueryHeads;
        int hkv = c.NumKvHeads;
        int d = c.HeadDim;
        int group = hq / hkv;
        var output = new double[queries.Length];
        var lse = new double[c.NumQueries * hq];
        for (int t = 0; t < c.NumQueries; t++)
        {
            for (int q = 0; q < hq; q++)
            {
                int kv = q / group;
                int[] live = [.. rows[kv].Where(p => !(p >= c.ExcludeStart && p < c.ExcludeEnd))];
                int li = t * hq + q;
                if (live.Length == 0)
                {
                    lse[li] = double.NegativeInfinity;
                    continue;
                }

                var s = new double[live.Length];
                double max = double.NegativeInfinity;
                for (int j = 0; j < live.Length; j++)
                {
                    double dot = 0;
                    for (int e = 0; e < d; e++)
                    {
                        dot += (double)queries[li * d + e] * keys[((long)live[j] * hkv + kv) * d + e];
                    }

                    s[j] = dot * scale;
                    max = Math.Max(max, s[j]);
                }

                double sum = 0;
                for (int j = 0; j < live.Length; j++)
                {
                    double p = Math.Exp(s[j] - max);
                    sum += p;
                    for (int e = 0; e < d; e++)
                    {
                        output[li * d + e] += p * values[((long)live[j] * hkv + kv) * d + e];
                    }
                }

                for (int e = 0; e < d; e++)
                {
                    output[li * d + e] /= sum;
                }

                lse[li] = max + Math.Log(sum);
            }
        }

        return (output, lse);
    }

    private static float[] Widen(KvDType dtype, byte[] bytes)
    {
        var f = new float[bytes.Length / KvDTypeInfo.SizeOf(dtype)];
        ElementConversion.ToSingle(dtype, bytes, f);
        return f;
    }

    private static double MaxDiff(float[] a, float[] b, float[] la, float[] lb)
    {
        double worst = 0;
        for (int i = 0; i < a.Length; i++)
        {
            worst = Math.Max(worst, a[i].Equals(b[i]) ? 0 : Math.Abs((double)a[i] - b[i]));
        }

        for (int i = 0; i < la.Length; i++)
        {
            worst = Math.Max(worst, la[i].Equals(lb[i]) ? 0 : double.PositiveInfinity);
        }

        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>Largest |a − b| over outputs and LSEs; equal infinities count as 0, NaN as +∞.</summary>
    private static double MaxAbsDiff(float[] a, float[] b, float[] la, float[] lb)
    {
        double worst = 0;
        for (int i = 0; i < a.Length; i++)
        {
            worst = Math.Max(worst, a[i].Equals(b[i]) ? 0 : Math.Abs((double)a[i] - b[i]));
        }

        for (int i = 0; i < la.Length; i++)
        {
            worst = Math.Max(worst, la[i].Equals(lb[i]) ? 0 : Math.Abs((double)la[i] - lb[i]));
        }

        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }

    /// <summary>The same layer on the device, in the contiguous or the block layout.</summary>
    internal sealed class DeviceLayer : IDisposable
    {
        private readonly DeviceBuffer? _keys;
        private readonly DeviceBuffer? _values;
        private readonly DeviceBuffer? _table;
        private readonly GpuSlabAllocator? _slabs;

        public DeviceLayer(in AttentionGeometry g, NativeKvBlocks host, byte[] keyBytes, byte[] valueBytes, int n, GpuKvLayout layout)
        {
            if (layout == GpuKvLayout.Contiguous)
            {
                // [n][kvHead][d] → [kvHead][n][d]
                int rowBytes = g.RowBytes;
                byte[] k = new byte[keyBytes.Length];
                byte[] v = new byte[valueBytes.Length];
                for (int p = 0; p < n; p++)
                {
                    for (int h = 0; h < g.NumKvHeads; h++)
                    {
                        int src = (p * g.NumKvHeads + h) * rowBytes;
                        int dst = (h * n + p) * rowBytes;
                        Array.Copy(keyBytes, src, k, dst, rowBytes);
                        Array.Copy(valueBytes, src, v, dst, rowBytes);
                    }
                }

                _keys = new DeviceBuffer(Math.Max(16, k.Length));
                _values = new DeviceBuffer(Math.Max(16, v.Length));
                _keys.Upload<byte>(k);
                _values.Upload<byte>(v);
                Source = GpuKvSource.Contiguous(_keys.Pointer, _values.Pointer, n);
            }
            else
            {
                _slabs = GpuSlabAllocator.ForBlocks(g, long.MaxValue, slotsPerSlab: 16);
                ulong[] table = new ulong[Math.Max(1, host.Blocks.Length)];
                for (int b = 0; b < host.Blocks.Length; b++)
                {
                    if (!_slabs.TryAllocate(out nint slot))
                    {
                        throw new InvalidOperationException("GPU slab budget exhausted");
                    }

                    _slabs.Upload(slot, host.Blocks[b], g);
                    table[b] = (ulong)slot;
                }

                _table = new DeviceBuffer(table.Length * 8L);
                _table.Upload<ulong>(table);
                Source = GpuKvSource.Blocks(_table.Pointer, n);
            }
        }

        public GpuKvSource Source { get; }

        public void Dispose()
        {
            _keys?.Dispose();
            _values?.Dispose();
            _table?.Dispose();
            _slabs?.Dispose();
        }
    }
}

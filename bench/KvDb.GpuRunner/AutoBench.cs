using System.Diagnostics;
using KvDb.Index;
using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.Workload;

namespace KvDb.GpuRunner;

/// <summary>
/// AUTO on the device (<see cref="GpuAutoAttention"/>) over a Llama-3-8B layer of the peaked synthetic workload: KvDb's
/// own centroid index (built on the CPU, exported, uploaded), its answers checked against float64 exact attention over
/// every token (rel-L2 per query head, violation rate of epsilon, the true softmax mass of the heavy set) and against a
/// float64 evaluation of the estimator over the positions the device reported, timed end to end (queries in, answer and
/// bounds on the host) against KvDb's dense kernel in the same run, and B = 8 / 32 requests queued back to back.
/// </summary>
internal static class AutoBench
{
    private const int QueryHeads = 32;
    private const int KvHeads = 8;
    private const int Dim = 128;
    private const double Epsilon = 0.05;
    private const double Delta = 0.05;
    private const int Sample = 256;

    public static int Run(CudaAttentionBackend backend, long ctx, int iterations, int trials, Action<string> emit)
    {
        if (!GpuAutoAttention.IsAvailable)
        {
            emit(Json.Line(("kind", "auto"), ("ctx", ctx), ("available", false), ("reason", "libkvdbcuda.so was built without kvdb_auto.cu")));
            return 1;
        }

        int n = checked((int)ctx);
        var wall = Stopwatch.StartNew();
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim, Seed = 4242, DiffuseHeadFraction = 0 });
        long rowFloats = (long)KvHeads * Dim;
        var keys = new float[n * rowFloats];
        var values = new float[n * rowFloats];
        const int chunk = 65_536;
        Parallel.For(0, (n + chunk - 1) / chunk, c =>
        {
            int start = c * chunk;
            int count = Math.Min(chunk, n - start);
            workload.FillKeys(start, count, keys.AsSpan((int)(start * rowFloats), (int)(count * rowFloats)));
            workload.FillValues(start, count, values.AsSpan((int)(start * rowFloats), (int)(count * rowFloats)));
            RoundToBf16(keys.AsSpan((int)(start * rowFloats), (int)(count * rowFloats)));
            RoundToBf16(values.AsSpan((int)(start * rowFloats), (int)(count * rowFloats)));
        });
        double generateS = wall.Elapsed.TotalSeconds;

        // KvDb's centroid index per KV head (the AUTO plan's centroid:L2), built as the catalog would, then exported.
        var exports = new CentroidExport[KvHeads];
        var positions = new long[n];
        for (int i = 0; i < n; i++)
        {
            positions[i] = i;
        }

        Parallel.For(0, KvHeads, h =>
        {
            var headKeys = new float[(long)n * Dim];
            for (int i = 0; i < n; i++)
            {
                keys.AsSpan((int)((i * rowFloats) + (h * Dim)), Dim).CopyTo(headKeys.AsSpan(i * Dim, Dim));
            }

            var index = new CentroidIndex(Dim);
            index.Build(headKeys, positions);
            exports[h] = index.Export(GpuAutoAttention.Sinks);
        });
        double indexS = wall.Elapsed.TotalSeconds - generateS;

        using var deviceIndex = new DeviceCentroidIndex(exports, n);
        using var kBuf = new DeviceBuffer((long)n * rowFloats * sizeof(ushort));
        using var vBuf = new DeviceBuffer((long)n * rowFloats * sizeof(ushort));
        UploadHeadMajor(keys, n, kBuf);
        UploadHeadMajor(values, n, vBuf);
        var kv = GpuKvSource.Contiguous(kBuf.Pointer, vBuf.Pointer, n);
        var geometry = new AttentionGeometry(QueryHeads, KvHeads, Dim, 64, KvDType.BF16, 1f / MathF.Sqrt(Dim));
        int perRow = (int)Math.Clamp((long)Math.Ceiling(n * 0.002), 64, 1024);
        using var auto = new GpuAutoAttention(backend, geometry, deviceIndex, n, 1, perRow);

        float[] queries = workload.Queries(trials, 777);
        int qFloats = QueryHeads * Dim;
        var output = new float[qFloats];
        var lse = new float[QueryHeads];
        double errSum = 0, errMax = 0, massSum = 0, massMin = 1, boundMax = 0, estimatorMax = 0;
        int violations = 0, heads = 0, exactAnswers = 0, samples = 0, heavyRows = 0;
        for (int t = 0; t < trials; t++)
        {
            ReadOnlySpan<float> q = queries.AsSpan(t * qFloats, qFloats);
            GpuAutoOutcome outcome = auto.Answer(kv, q, 0, 0, Epsilon, Delta, Sample, (ulong)(1000 + t), output, lse);
            exactAnswers += outcome.Exact ? 1 : 0;
            samples += outcome.Sample;
            var heavySets = new int[KvHeads][];
            var sampleSets = new (int[] Positions, float Residual)[KvHeads];
            for (int h = 0; h < KvHeads; h++)
            {
                heavySets[h] = outcome.Exact ? [] : auto.HeavyPositions(h);
                sampleSets[h] = outcome.Exact ? ([], 0f) : auto.Sample(h, outcome.Sample);
                heavyRows += heavySets[h].Length;
            }

            float[] answer = output.ToArray();
            float[] qCopy = q.ToArray();
            var gate = new object();
            Parallel.For(0, QueryHeads, qh =>
            {
                int h = qh / (QueryHeads / KvHeads);
                (double[] exact, double _, double heavyMass, double[] estimate) = Reference(keys, values, n, h, qCopy.AsSpan(qh * Dim, Dim), heavySets[h], sampleSets[h].Positions, sampleSets[h].Residual);
                double err = RelL2(answer.AsSpan(qh * Dim, Dim), exact);
                double estErr = outcome.Exact ? 0 : RelL2(answer.AsSpan(qh * Dim, Dim), estimate);
                double mass = outcome.Exact ? 1 : heavyMass;
                lock (gate)
                {
                    errSum += err;
                    errMax = Math.Max(errMax, err);
                    violations += err > Epsilon ? 1 : 0;
                    massSum += mass;
                    massMin = Math.Min(massMin, mass);
                    boundMax = Math.Max(boundMax, outcome.Bounds[qh]);
                    estimatorMax = Math.Max(estimatorMax, estErr);
                    heads++;
                }
            });
        }

        // Timing: the whole answer as a caller sees it, then the dense kernel on the same layer, alternating blocks.
        ReadOnlySpan<float> q0 = queries.AsSpan(0, qFloats);
        for (int i = 0; i < 20; i++)
        {
            auto.Answer(kv, q0, 0, 0, Epsilon, Delta, Sample, (ulong)i, output, lse);
            backend.Attention(geometry, kv, q0, 1, 0, 0, output, lse);
        }

        var autoUs = new List<double>();
        var denseUs = new List<double>();
        int tries = 0;
        for (int i = 0; i < iterations; i++)
        {
            long s = Stopwatch.GetTimestamp();
            GpuAutoOutcome o = auto.Answer(kv, q0, 0, 0, Epsilon, Delta, Sample, (ulong)(5000 + i), output, lse);
            autoUs.Add(Stopwatch.GetElapsedTime(s).TotalMicroseconds);
            tries += o.Tries;
            s = Stopwatch.GetTimestamp();
            backend.Attention(geometry, kv, q0, 1, 0, 0, output, lse);
            denseUs.Add(Stopwatch.GetElapsedTime(s).TotalMicroseconds);
        }

        double autoP50 = Percentile(autoUs, 0.5);
        double denseP50 = Percentile(denseUs, 0.5);
        bool pass = exactAnswers < trials && violations <= Math.Ceiling(heads * Delta) + 1 && estimatorMax < 1e-3;
        emit(Json.Line(
            ("kind", "auto"), ("ctx", ctx), ("epsilon", Epsilon), ("delta", Delta), ("sample", Sample), ("per_row", perRow),
            ("generate_s", Math.Round(generateS, 1)), ("index_build_s", Math.Round(indexS, 1)), ("index_device_bytes", deviceIndex.DeviceBytes),
            ("coarse_per_head", exports[0].CoarseCount), ("fine_per_head", exports[0].FineCount), ("outliers_max", deviceIndex.MaxOutliers),
            ("p50_us", Math.Round(autoP50, 1)), ("p99_us", Math.Round(Percentile(autoUs, 0.99), 1)), ("dense_p50_us", Math.Round(denseP50, 1)),
            ("speedup_vs_dense", Math.Round(denseP50 / autoP50, 2)), ("tries_per_answer", Math.Round((double)tries / iterations, 2)),
            ("attended_frac", Math.Round((double)(heavyRows + (samples * KvHeads)) / ((long)trials * KvHeads * n), 5)),
            ("sampled_frac", Math.Round((double)samples * KvHeads / ((long)trials * KvHeads * n), 5)),
            ("bytes_read", (long)(heavyRows + (samples * KvHeads)) / trials * 2 * Dim * 2),
            ("mass", Math.Round(massSum / heads, 5)), ("mass_min", Math.Round(massMin, 5)), ("rel_l2", Math.Round(errSum / heads, 6)), ("rel_l2_max", Math.Round(errMax, 6)),
            ("p_violation", Math.Round((double)violations / heads, 4)), ("bound_max", Math.Round(boundMax, 5)), ("estimator_rel_l2_max", estimatorMax),
            ("exact_answers", exactAnswers), ("trials", trials), ("pass", pass)));

        foreach (int b in new[] { 8, 32 })
        {
            var autos = new GpuAutoAttention[b];
            for (int i = 0; i < b; i++)
            {
                autos[i] = new GpuAutoAttention(backend, geometry, deviceIndex, n, 1, perRow);
            }

            try
            {
                var times = new List<double>();
                for (int it = 0; it < 23; it++)
                {
                    long s = Stopwatch.GetTimestamp();
                    for (int i = 0; i < b; i++)
                    {
                        autos[i].QueueTry(kv, queries.AsSpan((i % trials) * qFloats, qFloats), Sample, (ulong)(it * 100 + i), Delta);
                    }

                    backend.Synchronize();
                    if (it >= 3)
                    {
                        times.Add(Stopwatch.GetElapsedTime(s).TotalMicroseconds);
                    }
                }

                double total = Percentile(times, 0.5);
                emit(Json.Line(("kind", "auto_batch"), ("ctx", ctx), ("batch", b), ("total_us", Math.Round(total, 1)), ("us_per_request", Math.Round(total / b, 1)),
                    ("requests_per_s", Math.Round(b / total * 1e6)), ("dense_p50_us", Math.Round(denseP50, 1))));
            }
            finally
            {
                foreach (GpuAutoAttention a in autos)
                {
                    a.Dispose();
                }
            }
        }

        return pass ? 0 : 1;
    }

    private static void RoundToBf16(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++)
        {
            uint bits = BitConverter.SingleToUInt32Bits(x[i]);
            bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
            x[i] = BitConverter.UInt32BitsToSingle(bits);
        }
    }

    private static void UploadHeadMajor(float[] data, int n, DeviceBuffer buffer)
    {
        var head = new ushort[(long)n * Dim];
        for (int h = 0; h < KvHeads; h++)
        {
            Parallel.For(0, n, i =>
            {
                int src = (int)(((long)i * KvHeads * Dim) + (h * Dim));
                for (int e = 0; e < Dim; e++)
                {
                    head[(i * Dim) + e] = (ushort)(BitConverter.SingleToUInt32Bits(data[src + e]) >> 16);
                }
            });
            CudaRuntime.CopyToDevice<ushort>(buffer.Pointer + (nint)((long)h * n * Dim * sizeof(ushort)), head);
        }
    }

    /// <summary>Float64: exact attention of one query head over every token, the true mass of the heavy set, and the estimator over the reported sets.</summary>
    private static (double[] Exact, double Lse, double HeavyMass, double[] Estimate) Reference(float[] keys, float[] values, int n, int h, ReadOnlySpan<float> q, int[] heavy, int[] sample, float residual)
    {
        double scale = 1 / Math.Sqrt(Dim);
        var scores = new double[n];
        double max = double.NegativeInfinity;
        for (int j = 0; j < n; j++)
        {
            double s = 0;
            int off = (j * KvHeads * Dim) + (h * Dim);
            for (int e = 0; e < Dim; e++)
            {
                s += (double)q[e] * keys[off + e];
            }

            scores[j] = s * scale;
            max = Math.Max(max, scores[j]);
        }

        var exact = new double[Dim];
        double den = 0;
        for (int j = 0; j < n; j++)
        {
            double w = Math.Exp(scores[j] - max);
            den += w;
            int off = (j * KvHeads * Dim) + (h * Dim);
            for (int e = 0; e < Dim; e++)
            {
                exact[e] += w * values[off + e];
            }
        }

        for (int e = 0; e < Dim; e++)
        {
            exact[e] /= den;
        }

        double lse = max + Math.Log(den);
        double heavyMass = 0;
        var estimate = new double[Dim];
        double estDen = 0;
        foreach (int p in heavy)
        {
            double w = Math.Exp(scores[p] - max);
            heavyMass += w / den;
            estDen += w;
            int off = (p * KvHeads * Dim) + (h * Dim);
            for (int e = 0; e < Dim; e++)
            {
                estimate[e] += w * values[off + e];
            }
        }

        double weight = sample.Length > 0 && residual > 0 ? residual / sample.Length : 0;
        foreach (int p in sample)
        {
            double w = weight * Math.Exp(scores[p] - max);
            estDen += w;
            int off = (p * KvHeads * Dim) + (h * Dim);
            for (int e = 0; e < Dim; e++)
            {
                estimate[e] += w * values[off + e];
            }
        }

        for (int e = 0; e < Dim; e++)
        {
            estimate[e] = estDen > 0 ? estimate[e] / estDen : 0;
        }

        return (exact, lse, heavyMass, estimate);
    }

    private static double RelL2(ReadOnlySpan<float> actual, double[] expected)
    {
        double num = 0, den = 0;
        for (int e = 0; e < expected.Length; e++)
        {
            double d = actual[e] - expected[e];
            num += d * d;
            den += expected[e] * expected[e];
        }

        return den > 0 ? Math.Sqrt(num / den) : Math.Sqrt(num);
    }

    private static double Percentile(List<double> xs, double p)
    {
        var sorted = xs.ToArray();
        Array.Sort(sorted);
        return sorted[(int)Math.Min(sorted.Length - 1, Math.Floor(p * (sorted.Length - 1)))];
    }
}

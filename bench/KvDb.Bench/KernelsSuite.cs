using System.Diagnostics;
using KvDb.Kernels;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// Suite "kernels": the CPU attention kernels against the machine's own streaming-read bandwidth measured
/// in the same run. "exact" reads every row of a bf16 Llama-3-8B layer (8 KV heads, d = 128, 32 query
/// heads, one decode token); "gathered" reads a 2% selection made of whole 64-token blocks scattered over
/// the context (what a block-level sparse plan touches), all KV heads in parallel. The reference (best of 1
/// and all threads) and the exact kernel are timed in interleaved rounds (see
/// <see cref="ExactSuite.MeasureInterleaved"/>).
/// </summary>
internal static class KernelsSuite
{
    private const double GatheredFraction = 0.02;

    public static void Run(string[] args, TextWriter output)
    {
        long[] contexts = args.Length > 0 ? Array.ConvertAll(args, long.Parse) : [32 * 1024, 128 * 1024];
        foreach (long ctx in contexts)
        {
            RunContext(ctx, output);
        }
    }

    private static void RunContext(long ctx, TextWriter output)
    {
        var geometry = new AttentionGeometry(32, 8, 128, 64, KvDType.BF16, 1f / MathF.Sqrt(128));
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 8, NumQueryHeads = 32, HeadDim = 128 });
        int iterations = ctx <= 32 * 1024 ? 30 : 15;
        long t0 = Stopwatch.GetTimestamp();
        using var context = new NativeContext(workload, geometry);
        Console.Error.WriteLine($"kernels: generated {ctx} tokens ({context.SlabBytes >> 20} MiB) in {Stopwatch.GetElapsedTime(t0).TotalSeconds:F1} s");
        KvBlockRef[] blocks = context.Blocks;
        float[] queries = workload.Queries(1, 1);
        var outputBuf = new float[queries.Length];
        var lse = new float[geometry.NumQueryHeads];

        long regionBytes = (long)geometry.NumKvHeads * geometry.BlockCapacity * geometry.RowBytes;
        ulong checksum = 0;
        AttentionCounters exact = default;
        double[] us = ExactSuite.MeasureInterleaved(
            iterations,
            () => checksum += StreamingRead.Run(blocks, regionBytes, 1),
            () => checksum += StreamingRead.Run(blocks, regionBytes, Environment.ProcessorCount),
            () => exact = ExactAttentionKernel.Run(geometry, blocks, queries, 1, 0, 0, outputBuf, lse));
        double streamUs = Math.Min(us[0], us[1]);
        double exactUs = us[2];
        double reference = blocks.Length * 2L * regionBytes / (streamUs * 1e3);
        Emit(output, "exact", ctx, exactUs, exact.BytesRead, reference, blocks.Length);

        // Each KV head selects its own 2% of whole blocks (a different random set per head). Successive
        // iterations rotate through enough independent selections that together they exceed the caches
        // (≥ 64 MiB touched), so the figure is DRAM bandwidth, not a re-read of a cached selection.
        int pickBlocks = Math.Max(1, (int)Math.Round(blocks.Length * GatheredFraction));
        long selectionBytes = (long)pickBlocks * geometry.BlockCapacity * geometry.NumKvHeads * 2L * geometry.RowBytes;
        int sets = (int)Math.Clamp((64L << 20) / selectionBytes + 1, 1, 64);
        var runSets = new KvRowRun[sets][];
        var offsetSets = new int[sets][];
        for (int set = 0; set < sets; set++)
        {
            var runList = new List<KvRowRun>();
            var offsets = new int[geometry.NumKvHeads + 1];
            for (int h = 0; h < geometry.NumKvHeads; h++)
            {
                var rng = new DeterministicRandom(DeterministicRandom.Mix((ulong)set, (ulong)h, (ulong)ctx));
                var chosen = new SortedSet<int>();
                while (chosen.Count < pickBlocks)
                {
                    chosen.Add(rng.NextInt(blocks.Length));
                }

                foreach (int b in chosen)
                {
                    runList.Add(new KvRowRun(b, 0, blocks[b].Tokens));
                }

                offsets[h + 1] = runList.Count;
            }

            runSets[set] = [.. runList];
            offsetSets[set] = offsets;
        }

        // One round attends every selection once, interleaved with the streaming reads like the exact case, so
        // the gathered ratio also compares rounds that saw the same load.
        long gatheredBytes = 0;
        double[] gus = ExactSuite.MeasureInterleaved(
            iterations,
            () => checksum += StreamingRead.Run(blocks, regionBytes, 1),
            () => checksum += StreamingRead.Run(blocks, regionBytes, Environment.ProcessorCount),
            () =>
            {
                gatheredBytes = 0;
                for (int set = 0; set < sets; set++)
                {
                    gatheredBytes += ExactAttentionKernel.RunSelected(geometry, blocks, runSets[set], offsetSets[set], queries, 1, outputBuf, lse).BytesRead;
                }
            });
        double gatheredReference = blocks.Length * 2L * regionBytes / (Math.Min(gus[0], gus[1]) * 1e3);
        Emit(output, "gathered", ctx, gus[2] / sets, gatheredBytes / sets, gatheredReference, blocks.Length);
        Console.Error.WriteLine($"kernels: checksum {checksum:X}");
    }

    private static void Emit(TextWriter output, string kernel, long ctx, double us, long bytes, double referenceGbps, int blocks)
    {
        double achieved = bytes / (us * 1e3);
        new JsonLine()
            .Add("suite", "kernels")
            .Add("kernel", kernel)
            .Add("ctx", ctx)
            .Add("p50_us", us, 1)
            .Add("bytes", bytes)
            .Add("achieved_gbps", achieved, 2)
            .Add("reference_gbps", referenceGbps, 2)
            .Add("ratio", achieved / referenceGbps, 3)
            .Add("blocks", blocks)
            .WriteTo(output);
    }
}

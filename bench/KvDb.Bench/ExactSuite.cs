using System.Diagnostics;
using KvDb.Kernels;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// Suite "exact": one decode step of exact attention (bf16, 8 KV heads, 32 query heads, d = 128, blocks of
/// 64) over 32K and 128K tokens, against a plain streaming read of the same bytes. Exact attention reads
/// every byte once, so it is memory-bound at best and the ratio of the two is the kernel's efficiency. The
/// kernel and the reference (best of 1 and all threads) are timed in interleaved rounds.
/// </summary>
internal static class ExactSuite
{
    private const int WarmupIterations = 3;

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
        var options = new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 8, NumQueryHeads = 32, HeadDim = 128 };
        var geometry = new AttentionGeometry(32, 8, 128, 64, KvDType.BF16, 1f / MathF.Sqrt(128));
        var workload = new SyntheticWorkload(options);
        int iterations = ctx <= 32 * 1024 ? 30 : 15;

        long generateStart = Stopwatch.GetTimestamp();
        using var context = new NativeContext(workload, geometry);
        Console.Error.WriteLine($"exact: generated {ctx} tokens ({context.SlabBytes >> 20} MiB) in {Stopwatch.GetElapsedTime(generateStart).TotalSeconds:F1} s");

        float[] queries = workload.Queries(1, 1);
        var attention = new float[queries.Length];
        var lse = new float[geometry.NumQueryHeads];
        KvBlockRef[] blocks = context.Blocks;
        AttentionCounters counters = default;

        // The kernel reads only the rows a block holds; so does the baseline, since every block here is full.
        long regionBytes = (long)geometry.NumKvHeads * geometry.BlockCapacity * geometry.RowBytes;
        ulong checksum = 0;
        double[] us = MeasureInterleaved(
            iterations,
            () => counters = ExactAttentionKernel.Run(geometry, blocks, queries, 1, 0, 0, attention, lse),
            () => checksum += StreamingRead.Run(blocks, regionBytes, 1),
            () => checksum += StreamingRead.Run(blocks, regionBytes, Environment.ProcessorCount));
        double kernelUs = us[0];
        Console.Error.WriteLine($"exact: streaming read p50 {us[1]:F0} us on 1 thread, {us[2]:F0} us on {Environment.ProcessorCount} (checksum {checksum:X})");
        double streamUs = Math.Min(us[1], us[2]);

        long streamBytes = blocks.Length * 2L * regionBytes;
        double achieved = counters.BytesRead / (kernelUs * 1e3);
        double stream = streamBytes / (streamUs * 1e3);
        new JsonLine()
            .Add("suite", "exact")
            .Add("ctx", ctx)
            .Add("p50_us", kernelUs, 1)
            .Add("bytes_read", counters.BytesRead)
            .Add("achieved_gbps", achieved, 2)
            .Add("stream_read_gbps", stream, 2)
            .Add("ratio", achieved / stream, 3)
            .WriteTo(output);
    }

    /// <summary>
    /// Median wall time of each action over <paramref name="rounds"/> rounds that call every action once, after
    /// a warm-up, in microseconds. On a shared machine the load changes from second to second; interleaving
    /// lets a kernel and its streaming-read reference see the same load, so their ratio means something even
    /// when the absolute times drift.
    /// </summary>
    internal static double[] MeasureInterleaved(int rounds, params Action[] actions)
    {
        for (int i = 0; i < WarmupIterations; i++)
        {
            foreach (Action action in actions)
            {
                action();
            }
        }

        var samples = new double[actions.Length][];
        for (int a = 0; a < actions.Length; a++)
        {
            samples[a] = new double[rounds];
        }

        for (int i = 0; i < rounds; i++)
        {
            for (int a = 0; a < actions.Length; a++)
            {
                long start = Stopwatch.GetTimestamp();
                actions[a]();
                samples[a][i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            }
        }

        return Array.ConvertAll(samples, Percentile.Median);
    }

    /// <summary>Median wall time of <paramref name="iterations"/> calls after a warm-up, in microseconds.</summary>
    internal static double Measure(int iterations, Action action)
    {
        for (int i = 0; i < WarmupIterations; i++)
        {
            action();
        }

        var samples = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        return Percentile.Median(samples);
    }
}

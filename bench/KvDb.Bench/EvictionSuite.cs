using System.Diagnostics;
using KvDb.Kernels;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// The CPU tier's eviction policies compared on one access sequence: a skewed (Zipfian) read workload over more contexts
/// than fit the CPU tier, optionally mixed with one-off scans of cold contexts, run against a store under LRU and then
/// under TinyLFU (each in its own data directory, same contexts, same request sequence). Prints one line per
/// (workload, policy): CPU-tier hits, misses and hit ratio after a warm-up, demotions and the time the requests took.
/// </summary>
internal static class EvictionSuite
{
    public static Task RunAsync(string[] args)
    {
        int contexts = (int)SuiteOptions.Get(args, "contexts", 2000);
        int tokens = (int)SuiteOptions.Get(args, "tokens", 128);
        int requests = (int)SuiteOptions.Get(args, "requests", 40_000);
        double cpuFraction = SuiteOptions.Get(args, "cpu-percent", 10) / 100.0;
        double skew = double.Parse(SuiteOptions.Get(args, "skew", "0.99"), System.Globalization.CultureInfo.InvariantCulture);
        string[] workloads = SuiteOptions.Get(args, "workloads", "zipf,zipf+scan").Split(',');

        // bf16, 2 KV heads, d = 64, blocks of 16 tokens: 8 KiB a block; 128 tokens = 8 blocks a context.
        var model = ModelSchema.Normalize(new ModelSchema("evict", 1, 8, 2, 64, KvDType.BF16, 16, 0));
        long contextBytes = (long)(tokens / model.BlockSize) * model.BlockBytes;
        long budget = (long)(contexts * contextBytes * cpuFraction);
        foreach (string workload in workloads)
        {
            int[] sequence = Sequence(workload, contexts, requests, skew, seed: 14);
            foreach (EvictionPolicy policy in (EvictionPolicy[])[EvictionPolicy.Lru, EvictionPolicy.TinyLfu])
            {
                Run(workload, policy, model, contexts, tokens, budget, sequence, skew).WriteTo(Console.Out);
            }
        }

        return Task.CompletedTask;
    }

    private static JsonLine Run(string workload, EvictionPolicy policy, ModelSchema model, int contexts, int tokens, long budget, int[] sequence, double skew)
    {
        string dir = SuiteOptions.TempDir("evict");
        try
        {
            using var store = new KvStore(new StoreOptions { CpuBudgetBytes = budget, DataDirectory = dir, MaintenanceInterval = TimeSpan.Zero, EvictionPolicy = policy });
            store.CreateModel(model);
            var data = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = model.NumKvHeads, NumQueryHeads = model.NumQueryHeads, HeadDim = model.HeadDim, Seed = 3 });
            for (int c = 0; c < contexts; c++)
            {
                // One namespace per context: same bytes, different addresses, so no block is shared.
                store.CreateContext(model.Name, "ns" + c, "c" + c, []);
                store.AppendWorkload("c" + c, data, model.DType, 0, tokens);
            }

            store.Evict(0);
            int warmup = sequence.Length / 4;
            for (int i = 0; i < warmup; i++)
            {
                Read(store, sequence[i]);
            }

            (long hits0, long misses0, long demoted0) = Counters(store);
            long started = Stopwatch.GetTimestamp();
            for (int i = warmup; i < sequence.Length; i++)
            {
                Read(store, sequence[i]);
            }

            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            (long hits, long misses, long demoted) = Counters(store);
            hits -= hits0;
            misses -= misses0;
            Console.Error.WriteLine($"eviction {workload} {policy}: {hits} hits, {misses} misses in {seconds:F1} s");
            return new JsonLine()
                .Add("suite", "eviction")
                .Add("workload", workload)
                .Add("policy", policy == EvictionPolicy.TinyLfu ? "tinylfu" : "lru")
                .Add("contexts", contexts)
                .Add("cpu_budget_bytes", budget)
                .Add("context_bytes", (long)(tokens / model.BlockSize) * model.BlockBytes)
                .Add("skew", skew, 2)
                .Add("requests", sequence.Length - warmup)
                .Add("hits", hits)
                .Add("misses", misses)
                .Add("hit_ratio", (double)hits / (hits + misses), 4)
                .Add("demotions", demoted - demoted0)
                .Add("seconds", seconds, 2);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Read(KvStore store, int context)
    {
        using LayerSnapshot layer = store.OpenLayer("c" + context, 0);
    }

    private static (long Hits, long Misses, long Demotions) Counters(KvStore store)
    {
        StoreStats s = store.GetStats();
        return (s.Tiers[0].Hits, s.Tiers[0].Misses, s.Demotions);
    }

    /// <summary>
    /// Context numbers to read: Zipf(<paramref name="skew"/>) over the contexts in a random popularity order; "zipf+scan"
    /// replaces every fifth request by the next context of a sequential scan (each read once per pass, mostly cold ones).
    /// </summary>
    private static int[] Sequence(string workload, int contexts, int requests, double skew, int seed)
    {
        var random = new Random(seed);
        var popularity = new int[contexts];
        for (int i = 0; i < contexts; i++)
        {
            popularity[i] = i;
        }

        random.Shuffle(popularity);
        var cumulative = new double[contexts];
        double sum = 0;
        for (int r = 0; r < contexts; r++)
        {
            sum += 1.0 / Math.Pow(r + 1, skew);
            cumulative[r] = sum;
        }

        bool scan = workload switch
        {
            "zipf" => false,
            "zipf+scan" => true,
            _ => throw new ArgumentException($"unknown workload \"{workload}\" (zipf, zipf+scan)"),
        };
        var sequence = new int[requests];
        int next = 0;
        for (int i = 0; i < requests; i++)
        {
            if (scan && i % 5 == 4)
            {
                sequence[i] = next;
                next = (next + 1) % contexts;
                continue;
            }

            int rank = Array.BinarySearch(cumulative, random.NextDouble() * sum);
            sequence[i] = popularity[rank < 0 ? ~rank : rank];
        }

        return sequence;
    }
}

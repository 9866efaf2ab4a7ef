using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// Suite "index-lifecycle": what growing and restarting costs per index family, on the synthetic workload
/// (d = 128, one KV head's keys, 512 sample queries of its GQA group for the query-guided families).
/// "grow" lines (each timing the best of 3 runs): a ctx-token layer grows by ctx/4 — build_us_per_1k = rebuilding an index over all
/// 1.25·ctx keys, per 1K keys; extend_us_per_1k = IKeyIndex.Extend of the ctx-key index by the new keys,
/// per 1K new keys; copy_us_per_1k = the Save+Load copy the catalog makes before extending a suffix, per
/// 1K keys copied; load_us_per_1k = IndexFactory.Load of the saved 1.25·ctx-key index, per 1K keys.
/// "restart" lines: a persistent store with a ctx-token, 2-KV-head bf16 layer: time until the catalog's
/// indexes are ready after a restart (loaded from DATA/indexes) vs. built from scratch (one run each; the
/// query-guided families build with the 4 sample queries of that first request).
/// Options: --ctx 32768 --families block,centroid,lsh,graph.
/// </summary>
public static class IndexLifecycleSuite
{
    /// <summary>Each grow timing is the best of this many runs (the dev machine is shared and noisy).</summary>
    private const int Rounds = 3;

    /// <summary>Runs the suite and prints the JSON lines to stdout (progress to stderr).</summary>
    public static async Task RunAsync(string[] args)
    {
        int ctx = 32 * 1024;
        string[] specs = ["block", "centroid:L2", "lsh", "graph"];
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--ctx":
                    ctx = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--families":
                    specs = args[i + 1].Split(',').Select(f => f == "centroid" ? "centroid:L2" : f).ToArray();
                    break;
                default:
                    throw new ArgumentException($"unknown option {args[i]}; use --ctx N and --families a,b");
            }
        }

        Grow(ctx, specs);
        foreach (string spec in specs)
        {
            await RestartAsync(ctx, spec).ConfigureAwait(false);
        }
    }

    private static void Grow(int ctx, string[] specs)
    {
        const int d = 128;
        int grown = ctx + (ctx / 4);
        Console.Error.WriteLine($"index-lifecycle: generating {grown} tokens");
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = grown, NumKvHeads = 2, NumQueryHeads = 8, HeadDim = d });
        var all = new float[(long)grown * 2 * d];
        workload.FillKeys(0, grown, all);
        var keys = new float[(long)grown * d];
        for (int t = 0; t < grown; t++)
        {
            all.AsSpan(t * 2 * d, d).CopyTo(keys.AsSpan(t * d, d));
        }

        long[] positions = Enumerable.Range(0, grown).Select(i => (long)i).ToArray();
        float[] queries = workload.Queries(512, 1001);
        var samples = new float[512 * 4 * d];
        for (int s = 0; s < 512; s++)
        {
            queries.AsSpan(s * 8 * d, 4 * d).CopyTo(samples.AsSpan(s * 4 * d, 4 * d));
        }

        foreach (string spec in specs)
        {
            Console.Error.WriteLine($"index-lifecycle: grow {spec} {ctx} -> {grown}");
            double build = double.MaxValue;
            double extend = double.MaxValue;
            double copyMicros = double.MaxValue;
            double load = double.MaxValue;
            long fileBytes = 0;
            for (int round = 0; round < Rounds; round++)
            {
                using IKeyIndex rebuilt = Create(spec, d, samples);
                build = Math.Min(build, Time(() => rebuilt.Build(keys, positions)));

                using IKeyIndex grownIndex = Create(spec, d, samples);
                grownIndex.Build(keys.AsSpan(0, ctx * d), positions.AsSpan(0, ctx));
                IKeyIndex? copy = null;
                copyMicros = Math.Min(copyMicros, Time(() => copy = Copy(grownIndex)));
                copy!.Dispose();
                extend = Math.Min(extend, Time(() => grownIndex.Extend(keys.AsSpan(ctx * d), positions.AsSpan(ctx))));

                using var saved = new MemoryStream();
                rebuilt.Save(saved);
                fileBytes = saved.Length;
                IKeyIndex? loaded = null;
                load = Math.Min(load, Time(() =>
                {
                    saved.Position = 0;
                    loaded = IndexFactory.Load(saved);
                }));
                loaded!.Dispose();
            }

            Console.WriteLine(JsonSerializer.Serialize(new
            {
                suite = "index-lifecycle",
                kind = "grow",
                family = IndexSpec.Parse(spec).Family,
                spec,
                ctx,
                grown_to = grown,
                build_us_per_1k = Math.Round(build / (grown / 1000.0), 0),
                extend_us_per_1k = Math.Round(extend / ((grown - ctx) / 1000.0), 0),
                copy_us_per_1k = Math.Round(copyMicros / (ctx / 1000.0), 0),
                load_us_per_1k = Math.Round(load / (grown / 1000.0), 0),
                file_bytes = fileBytes,
            }));
        }
    }

    private static async Task RestartAsync(int ctx, string spec)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kvdb-bench-idx-" + Guid.NewGuid().ToString("N"));
        var model = new ModelSchema("bench", 1, 8, 2, 128, KvDType.BF16, 64, 0);
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 2, NumQueryHeads = 8 });
        float[] q = workload.Queries(4, 5);
        PlanKind kind = spec switch
        {
            "block" => PlanKind.BlockTopK,
            "centroid:L2" => PlanKind.CentroidTopK,
            "lsh" => PlanKind.LshTopK,
            "graph" => PlanKind.AnnTopK,
            _ => throw new ArgumentException($"the restart part runs the planner's specs (block, centroid:L2, lsh, graph), not {spec}"),
        };
        var request = new AttentionQuery("c", 0, q, 4, 0, 0, new PlanRequest(kind), false);
        try
        {
            double built;
            double loadedMillis;
            int files;
            using (var store = new KvStore(new StoreOptions { DataDirectory = dir, CpuBudgetBytes = 1L << 30, MaintenanceInterval = TimeSpan.Zero }))
            {
                store.CreateModel(model);
                store.CreateContext("bench", "", "c", []);
                store.AppendWorkload("c", workload, KvDType.BF16, 0, ctx);

                using var executor = new AttentionExecutor(store);
                built = await UntilReady(executor, request, spec).ConfigureAwait(false);
                files = Directory.GetFiles(Path.Combine(dir, "indexes"), "*.kix").Length;
            }

            IndexCatalogCounters counters;
            using (var store = new KvStore(new StoreOptions { DataDirectory = dir, CpuBudgetBytes = 1L << 30, MaintenanceInterval = TimeSpan.Zero }))
            {
                using var executor = new AttentionExecutor(store);
                loadedMillis = await UntilReady(executor, request, spec).ConfigureAwait(false);
                counters = executor.Indexes.Counters;
            }

            Console.WriteLine(JsonSerializer.Serialize(new
            {
                suite = "index-lifecycle",
                kind = "restart",
                family = IndexSpec.Parse(spec).Family,
                spec,
                ctx,
                kv_heads = 2,
                rebuild_ms = Math.Round(built, 1),
                restart_load_ms = Math.Round(loadedMillis, 1),
                files,
                loads = counters.Loads,
                builds_after_restart = counters.Builds,
            }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Milliseconds from the first sparse request until the catalog answers sparsely (the background work the request started).</summary>
    private static async Task<double> UntilReady(AttentionExecutor executor, AttentionQuery request, string spec)
    {
        long start = Stopwatch.GetTimestamp();
        executor.Attend(request);
        await executor.Indexes.WhenIdle(request.ContextId, request.Layer, spec).ConfigureAwait(false);
        double millis = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        AttentionResult r = executor.Attend(request);
        if (!r.Stats.Plan.StartsWith("indexed:", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"the index was not ready after its build: {ExplainText.Render(r.Stats.Explain)}");
        }

        return millis;
    }

    private static IKeyIndex Create(string spec, int d, float[] samples)
    {
        IKeyIndex index = IndexFactory.Create(spec, d);
        if (index is IQueryGuidedIndex guided)
        {
            guided.AddSampleQueries(samples);
        }

        return index;
    }

    private static IKeyIndex Copy(IKeyIndex index)
    {
        using var buffer = new MemoryStream();
        index.Save(buffer);
        buffer.Position = 0;
        return IndexFactory.Load(buffer);
    }

    private static double Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalMicroseconds;
    }
}

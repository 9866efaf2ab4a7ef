using System.Diagnostics;
using KvDb.Kernels;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Planning;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// Suite "attend": one decode step (1 query token, Llama-3-8B layer shape: 32 query heads, 8 KV heads, d = 128,
/// bf16) through the query engine's executor over an in-memory store, per plan kind: latency and the bytes one
/// Attend allocates — on the calling thread (GC.GetAllocatedBytesForCurrentThread) and in the whole process
/// (GC.GetTotalAllocatedBytes, which also counts the kernel's worker threads). The result arrays (output and
/// LSE, <c>result_bytes</c>) are the floor; everything above it is the query path's own. Indexes are built and
/// settled before timing, so no background build runs meanwhile. Exact is the same-run baseline. The same request
/// is then timed in its two phases over one pinned layer: <c>select_p50_us</c> (the plan choosing tokens per KV head)
/// and <c>attend_p50_us</c> (the kernels over that selection, CPU).
/// </summary>
internal static class AttendSuite
{
    private const int Iterations = 20;

    public static async Task RunAsync(string[] args)
    {
        long ctx = SuiteOptions.Get(args, "ctx", 32 * 1024);
        string kindsArg = SuiteOptions.Get(args, "kinds", "exact,block,centroid,lsh,lsh-sampling");
        var model = new ModelSchema("bench", 1, 32, 8, 128, KvDType.BF16, 64, 0);
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 8, NumQueryHeads = 32, HeadDim = 128 });
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 8L << 30, MaintenanceInterval = TimeSpan.Zero });
        store.CreateModel(model);
        string context = store.CreateContext("bench", "", null, ReadOnlySpan<int>.Empty).Id;
        Console.Error.WriteLine($"attend: loading {ctx} tokens");
        const int chunk = 4096;
        for (long start = 0; start < ctx; start += chunk)
        {
            int n = (int)Math.Min(chunk, ctx - start);
            var ids = new int[n];
            workload.FillTokenIds(start, ids);
            using IAppendTransaction tx = store.BeginAppend(context);
            tx.Append(0, ids, workload.KeyBytes(KvDType.BF16, start, n), workload.ValueBytes(KvDType.BF16, start, n));
            tx.Commit();
        }

        using var executor = new AttentionExecutor(store);
        float[] samples = workload.Queries(128, 77);
        executor.AddSampleQueries(context, 0, samples);
        float[] queries = workload.Queries(1, 5);
        double exactUs = 0;
        foreach (string name in kindsArg.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            PlanKind kind = Kind(name);
            var query = new AttentionQuery(context, 0, queries, 1, 0, 0, new PlanRequest(kind), false);
            IReadOnlyList<string> specs = kind == PlanKind.Auto ? [QueryPlanner.AutoHeavySpec] : PlanRegistry.Default.Get(kind).IndexSpecs;
            executor.Attend(query);
            foreach (string spec in specs)
            {
                Console.Error.WriteLine($"attend: building {spec}");
                await executor.Indexes.WhenIdle(context, 0, spec).ConfigureAwait(false);
            }

            // Warm up for a second (and at least 10 requests): the runtime recompiles a hot method optimized only after
            // ~30 calls and a quiet period, and a sparse request calls its search once per KV head, so fewer warm-up
            // requests time unoptimized code.
            AttentionResult result = executor.Attend(query);
            var warm = Stopwatch.StartNew();
            for (int i = 0; i < 10 || warm.Elapsed < TimeSpan.FromSeconds(1); i++)
            {
                result = executor.Attend(query);
            }

            var micros = new double[Iterations];
            var threadBytes = new long[Iterations];
            var totalBytes = new long[Iterations];
            for (int i = 0; i < Iterations; i++)
            {
                long thread0 = GC.GetAllocatedBytesForCurrentThread();
                long total0 = GC.GetTotalAllocatedBytes(precise: true);
                long t0 = Stopwatch.GetTimestamp();
                result = executor.Attend(query);
                micros[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                threadBytes[i] = GC.GetAllocatedBytesForCurrentThread() - thread0;
                totalBytes[i] = GC.GetTotalAllocatedBytes(precise: true) - total0;
            }

            // The same request split into its two phases over one pinned layer (CPU attend): how much of the time
            // choosing the tokens takes, against attending to them.
            var selectUs = new double[Iterations];
            var attendUs = new double[Iterations];
            using (LayerSnapshot layer = store.OpenLayer(context, 0))
            {
                IAttentionPlan plan = new QueryPlanner(executor.Indexes, costs: executor.Costs).Choose(query.Plan, layer, context).Plan;
                var output = new float[queries.Length];
                var lse = new float[model.NumQueryHeads];
                for (int i = 0; i < Iterations; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    HeadSelection[] heads = plan.SelectAll(layer, query);
                    long t1 = Stopwatch.GetTimestamp();
                    SelectionAttention.Run(layer, query, heads, gpu: null, output, lse, out _);
                    selectUs[i] = Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds;
                    attendUs[i] = Stopwatch.GetElapsedTime(t1).TotalMicroseconds;
                }
            }

            double p50 = Percentile.Median(micros);
            if (kind == PlanKind.Exact)
            {
                exactUs = p50;
            }

            Array.Sort(threadBytes);
            Array.Sort(totalBytes);
            long resultBytes = (result.Output.Length + result.Lse.Length) * sizeof(float);
            new JsonLine()
                .Add("suite", "attend")
                .Add("ctx", ctx)
                .Add("kind", name)
                .Add("plan", result.Stats.Plan)
                .Add("p50_us", p50, 0)
                .Add("vs_exact", exactUs > 0 ? p50 / exactUs : -1, 3)
                .Add("select_p50_us", Percentile.Median(selectUs), 0)
                .Add("attend_p50_us", Percentile.Median(attendUs), 0)
                .Add("attended_fraction", result.Stats.TokensAttended / (double)(ctx * model.NumKvHeads), 4)
                .Add("alloc_thread_bytes", threadBytes[Iterations / 2])
                .Add("alloc_total_bytes", totalBytes[Iterations / 2])
                .Add("result_bytes", resultBytes)
                .Add("alloc_per_token_bytes", (totalBytes[Iterations / 2] - resultBytes) / (double)ctx, 3)
                .Add("simd", Simd())
                .WriteTo(Console.Out);
        }
    }

    private static string Simd() => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "avx512" : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "avx2" : "scalar";

    private static PlanKind Kind(string name) => name switch
    {
        "exact" => PlanKind.Exact,
        "auto" => PlanKind.Auto,
        "block" => PlanKind.BlockTopK,
        "centroid" => PlanKind.CentroidTopK,
        "lsh" => PlanKind.LshTopK,
        "graph" => PlanKind.AnnTopK,
        "lsh-sampling" => PlanKind.LshSampling,
        _ => throw new ArgumentException($"unknown kind \"{name}\"; use exact, auto, block, centroid, lsh, graph, lsh-sampling"),
    };
}

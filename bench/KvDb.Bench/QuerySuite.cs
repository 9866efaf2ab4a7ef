using System.Diagnostics;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// query: what an engine feels, end to end through the gRPC server on loopback. One layer of the Llama-3-8B shape
/// (32 query heads, 8 KV heads, d = 128, bf16) holding a synthetic context, 32 prefill sample queries sent with the
/// append; then per plan (EXACT measured in the same run) the server time and the client round trip of decode queries,
/// and their quality against the f64 reference over all tokens: true softmax mass of the attended tokens, relative
/// L2 error per query head, the share of (query, head) pairs above epsilon. One JSON line per plan and workload, and
/// for AUTO one per head class (peaked / topical / diffuse) with its attended and sampled shares. The workload
/// <c>real</c> is the committed real-attention set instead, every layer, merged with an engine's local window
/// (<see cref="RealQuery"/>).
/// </summary>
public static class QuerySuite
{
    private const int QueryHeads = 32;
    private const int KvHeads = 8;
    private const int Dim = 128;

    /// <summary>Runs the suite: --ctx N (131072), --workloads peaked,mixed (or real), --plans exact,auto, --epsilon 0.05, --queries 16, --quality true, --stream false, --data DIR, --cpu-mb N (real: --real-manifest PATH, --window 64, --sequence S, --queries up to 64).</summary>
    public static async Task RunAsync(string[] args)
    {
        long ctx = SuiteOptions.Get(args, "ctx", 128 * 1024);
        string[] workloads = SuiteOptions.Get(args, "workloads", "peaked,mixed").Split(',', StringSplitOptions.RemoveEmptyEntries);
        string[] plans = SuiteOptions.Get(args, "plans", "exact,auto").Split(',', StringSplitOptions.RemoveEmptyEntries);
        double epsilon = double.Parse(SuiteOptions.Get(args, "epsilon", "0.05"), System.Globalization.CultureInfo.InvariantCulture);
        int queries = (int)SuiteOptions.Get(args, "queries", 16);
        if (workloads.Contains("real"))
        {
            workloads = workloads.Where(w => w != "real").ToArray();
            await RealQuery.RunAsync(args, plans, epsilon).ConfigureAwait(false);
            if (workloads.Length == 0)
            {
                return;
            }
        }

        // --quality false skips the f64 reference pass (timings only, e.g. under a profiler).
        bool quality = SuiteOptions.Get(args, "quality", "true") != "false";

        // --stream true also times the same requests sent back to back as unary calls and as one AttendStream.
        bool stream = SuiteOptions.Get(args, "stream", "false") == "true";
        long budget = ctx * KvHeads * 2L * Dim * 2 * 2;

        // --data DIR keeps the context in a durable store there; --cpu-mb N caps the CPU tier below the layer so the
        // rest is read from the disk tier (the "disk + CPU" figures).
        string? data = SuiteOptions.Get(args, "data", "") is { Length: > 0 } dir ? dir : null;
        long cpuBytes = SuiteOptions.Get(args, "cpu-mb", 0) << 20;
        var options = new KvDbServerOptions { Port = 0, DataDirectory = data, CpuBudgetBytes = cpuBytes > 0 ? cpuBytes : Math.Max(2L << 30, budget) };
        await using KvDbServerHandle server = await KvDbServer.StartAsync(options).ConfigureAwait(false);
        using var client = new KvDbClient(server.Address);
        StatsResponse stats = await client.GetStatsAsync().ConfigureAwait(false);
        Console.Error.WriteLine($"query: calibrated stream {stats.QueryCosts.StreamBytesPerSecond / 1e9:F1} GB/s, gather {stats.QueryCosts.GatherBytesPerSecond / 1e9:F1} GB/s, simd {stats.QueryCosts.Simd}");
        await client.CreateModelAsync(new Model { Name = "llama3-8b-layer", NumLayers = 1, NumQueryHeads = QueryHeads, NumKvHeads = KvHeads, HeadDim = Dim, Dtype = DType.Bf16 }).ConfigureAwait(false);
        foreach (string workloadName in workloads)
        {
            var workload = new SyntheticWorkload(Options(workloadName, ctx));
            var context = new QueryContext(workload, ctx);
            string id = await context.LoadAsync(client, workloadName).ConfigureAwait(false);
            double exactP50 = 0;
            double exactRtt = 0;
            foreach (string plan in plans)
            {
                PlanMeasurement m = await MeasureAsync(client, id, context, plan, epsilon, queries, quality).ConfigureAwait(false);
                if (plan == "exact")
                {
                    (exactP50, exactRtt) = (m.P50, m.RttP50);
                }

                m.Write(workloadName, ctx, epsilon, exactP50, exactRtt, stats.QueryCosts.Simd);
                if (stream)
                {
                    await MeasureStreamAsync(client, id, context, plan, epsilon, queries, workloadName, ctx, stats.QueryCosts.Simd).ConfigureAwait(false);
                }
            }

            await client.DeleteContextAsync(id).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Wall time of <paramref name="count"/> requests answered one after another (unary, each awaited) against the same
    /// requests written at once on one AttendStream (answered pipelined): what an engine with many requests in flight
    /// (a batch of sequences, or layers it can send ahead) gains from the stream. Best of three rounds each.
    /// </summary>
    private static async Task MeasureStreamAsync(KvDbClient client, string id, QueryContext context, string planName, double epsilon, int count, string workload, long ctx, string simd)
    {
        Plan plan = RealQuery.PlanFor(planName, epsilon);
        var requests = new AttendRequest[count];
        for (int i = 0; i < count; i++)
        {
            requests[i] = KvDbClient.BuildAttend(id, 0, context.Query(i), 1, QueryHeads, Dim, plan: plan);
        }

        double unary = double.MaxValue;
        double streamed = double.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            long t0 = Stopwatch.GetTimestamp();
            foreach (AttendRequest request in requests)
            {
                await client.Attention.AttendAsync(request).ConfigureAwait(false);
            }

            unary = Math.Min(unary, Stopwatch.GetElapsedTime(t0).TotalMicroseconds);

            t0 = Stopwatch.GetTimestamp();
            using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = client.Attention.AttendStream();
            Task send = Task.Run(async () =>
            {
                foreach (AttendRequest request in requests)
                {
                    await call.RequestStream.WriteAsync(request).ConfigureAwait(false);
                }

                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            });
            int answered = 0;
            await foreach (AttendResponse unused in call.ResponseStream.ReadAllAsync().ConfigureAwait(false))
            {
                answered++;
            }

            await send.ConfigureAwait(false);
            streamed = Math.Min(streamed, Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
            if (answered != count)
            {
                throw new InvalidOperationException($"stream answered {answered} of {count} requests");
            }
        }

        new JsonLine()
            .Add("suite", "query").Add("mode", "stream").Add("plan", planName).Add("workload", workload).Add("ctx", ctx)
            .Add("requests", count).Add("pipeline_depth", KvDb.Server.Services.AttentionService.StreamPipelineDepth).Add("simd", simd)
            .Add("unary_us_per_request", unary / count, 1).Add("stream_us_per_request", streamed / count, 1)
            .Add("stream_speedup", unary / streamed, 2)
            .WriteTo(Console.Out);
    }

    private static SyntheticWorkloadOptions Options(string name, long ctx)
    {
        var o = new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim, Seed = 4242 };
        return name switch
        {
            "peaked" => o with { DiffuseHeadFraction = 0 },
            "mixed" => o with { DiffuseHeadFraction = 0.25, TopicalHeadFraction = 0.5 },
            "topical" => o with { DiffuseHeadFraction = 0, TopicalHeadFraction = 1 },
            "diffuse" => o with { DiffuseHeadFraction = 1 },
            _ => throw new ArgumentException($"unknown workload \"{name}\"; use peaked, mixed, topical, diffuse or real"),
        };
    }

    private static async Task<PlanMeasurement> MeasureAsync(KvDbClient client, string id, QueryContext context, string planName, double epsilon, int count, bool quality)
    {
        Plan plan = RealQuery.PlanFor(planName, epsilon);

        // Until the plan's index is ready the server answers exactly; wait (bounded) so the figures are the plan's.
        float[] probe = context.Query(0);
        var wait = Stopwatch.StartNew();
        while (planName != "exact" && wait.Elapsed < TimeSpan.FromMinutes(10))
        {
            AttendResponse r = await client.Attention.AttendAsync(KvDbClient.BuildAttend(id, 0, probe, 1, QueryHeads, Dim, plan: plan)).ConfigureAwait(false);
            if (r.Stats.Plan != "exact" || !r.Stats.Explain.Contains("being built", StringComparison.Ordinal))
            {
                break;
            }

            Console.Error.WriteLine($"query: {planName}: waiting for its index ({wait.Elapsed.TotalSeconds:F0} s)");
            await Task.Delay(2000).ConfigureAwait(false);
        }

        // Warm up a second: the runtime re-optimizes hot methods after ~30 calls.
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 8 || warm.Elapsed < TimeSpan.FromSeconds(1); i++)
        {
            await client.Attention.AttendAsync(KvDbClient.BuildAttend(id, 0, context.Query(i % count), 1, QueryHeads, Dim, plan: plan)).ConfigureAwait(false);
        }

        var m = new PlanMeasurement(planName, count);
        for (int i = 0; i < count; i++)
        {
            float[] q = context.Query(i);
            AttendRequest request = KvDbClient.BuildAttend(id, 0, q, 1, QueryHeads, Dim, plan: plan);
            long t0 = Stopwatch.GetTimestamp();
            AttendResponse timed = await client.Attention.AttendAsync(request).ConfigureAwait(false);
            m.Rtt[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            m.Server[i] = timed.Stats.ServerMicros;
            m.Bytes += timed.Stats.BytesRead;
            m.PlanName = timed.Stats.Plan;

            if (!quality)
            {
                continue;
            }

            // The quality pass asks for the selection too (not timed: returning positions costs the server time).
            request.ReturnSelection = true;
            AttendResponse checkedResponse = await client.Attention.AttendAsync(request).ConfigureAwait(false);
            m.AddQuality(context, i, checkedResponse, epsilon);
            Console.Error.WriteLine($"query: {planName} {i + 1}/{count}: server {timed.Stats.ServerMicros:F0} µs, rtt {m.Rtt[i]:F0} µs");
        }

        return m;
    }
}

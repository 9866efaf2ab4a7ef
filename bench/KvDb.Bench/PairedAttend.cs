using System.Diagnostics;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// What a server feature costs an Attend: the same EXACT queries alternate between two servers that hold the same
/// context, one without the feature and one with it (which goes first alternates too), so both see the same machine
/// load. Prints one line with both p50s (server and round trip) and the round-trip overhead.
/// </summary>
internal static class PairedAttend
{
    /// <summary>Loads the same --ctx-token context (default 32K) through both clients, then alternates --queries EXACT requests (default 200).</summary>
    public static async Task RunAsync(string[] args, string suite, string baseName, string featureName, KvDbClient[] clients)
    {
        long ctx = SuiteOptions.Get(args, "ctx", 32 * 1024);
        int queries = (int)SuiteOptions.Get(args, "queries", 200);
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 8, NumQueryHeads = 32, HeadDim = 128, Seed = 4242 });
        var model = new Model { Name = "llama3-8b-layer", NumLayers = 1, NumQueryHeads = 32, NumKvHeads = 8, HeadDim = 128, Dtype = DType.Bf16 };
        var ids = new string[2];
        for (int s = 0; s < 2; s++)
        {
            await clients[s].CreateModelAsync(model).ConfigureAwait(false);
            ids[s] = await new QueryContext(workload, ctx).LoadAsync(clients[s], suite).ConfigureAwait(false);
        }

        var server = new double[2][];
        var rtt = new double[2][];
        for (int s = 0; s < 2; s++)
        {
            server[s] = new double[queries];
            rtt[s] = new double[queries];
        }

        // Warm both paths, then alternate which server goes first.
        for (int i = 0; i < 20; i++)
        {
            for (int s = 0; s < 2; s++)
            {
                await clients[s].Attention.AttendAsync(KvDbClient.BuildAttend(ids[s], 0, workload.Queries(1, (ulong)i), 1, 32, 128)).ConfigureAwait(false);
            }
        }

        for (int i = 0; i < queries; i++)
        {
            float[] q = workload.Queries(1, 5000 + (ulong)i);
            for (int k = 0; k < 2; k++)
            {
                int s = (i + k) % 2;
                long t0 = Stopwatch.GetTimestamp();
                AttendResponse r = await clients[s].Attention.AttendAsync(KvDbClient.BuildAttend(ids[s], 0, q, 1, 32, 128)).ConfigureAwait(false);
                rtt[s][i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                server[s][i] = r.Stats.ServerMicros;
            }
        }

        double baseRtt = Percentile.Median(rtt[0]);
        double featureRtt = Percentile.Median(rtt[1]);
        new JsonLine()
            .Add("suite", suite).Add("plan", "exact").Add("ctx", ctx).Add("queries", queries)
            .Add(baseName + "_p50_us", Percentile.Median(server[0]), 1).Add(featureName + "_p50_us", Percentile.Median(server[1]), 1)
            .Add(baseName + "_rtt_p50_us", baseRtt, 1).Add(featureName + "_rtt_p50_us", featureRtt, 1)
            .Add("rtt_overhead", (featureRtt / baseRtt) - 1, 4)
            .WriteTo(Console.Out);
    }
}

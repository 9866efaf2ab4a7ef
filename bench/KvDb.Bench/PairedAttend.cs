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
    public static async Task RunAsync(string suite, string baseName, string featureName, KvDbClient[] clients, string[] ids, SyntheticWorkload workload, long ctx, int queries)
    {
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

using System.Diagnostics;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;

namespace KvDb.Bench;

/// <summary>
/// Suite "client": the .NET client's append and attend throughput on the workload clients/python/bench_client.py
/// runs through the Python client, so the two can be compared against the same server (--address; without it an
/// in-process server is started). Workload: a 4-layer bf16 model (32 query heads, 8 KV heads, d = 128); --reps appends
/// of --tokens tokens × --layers layers in one AppendKv stream each (1024-token messages, the clients' default; the
/// same K and V bytes for every layer), each into a fresh context deleted afterwards; then --queries EXACT Attends of
/// one query token over layer 0 of an --attend-ctx-token context. Prints one JSON line: append p50 and bytes/s (K+V
/// bytes / p50), attend round-trip p50, the server's own p50, and the attended K/V bytes per second of round trip.
/// </summary>
internal static class ClientSuite
{
    private const int QueryHeads = 32, KvHeads = 8, HeadDim = 128;

    public static async Task RunAsync(string[] args)
    {
        string address = SuiteOptions.Get(args, "address", string.Empty);
        int tokens = (int)SuiteOptions.Get(args, "tokens", 32 * 1024);
        int layers = (int)SuiteOptions.Get(args, "layers", 4);
        int reps = (int)SuiteOptions.Get(args, "reps", 3);
        int attendCtx = (int)SuiteOptions.Get(args, "attend-ctx", 8 * 1024);
        int queries = (int)SuiteOptions.Get(args, "queries", 200);
        string modelName = SuiteOptions.Get(args, "model", "client-bench");

        KvDbServerHandle? local = null;
        if (address.Length == 0)
        {
            local = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false }).ConfigureAwait(false);
            address = local.Address;
        }

        try
        {
            using var client = new KvDbClient(address);
            await client.CreateModelAsync(new Model { Name = modelName, NumLayers = layers, NumQueryHeads = QueryHeads, NumKvHeads = KvHeads, HeadDim = HeadDim, Dtype = DType.Bf16 }).ConfigureAwait(false);

            var rng = new Random(7);
            byte[] keys = Bf16Normal(rng, (long)tokens * KvHeads * HeadDim);
            byte[] values = Bf16Normal(rng, (long)tokens * KvHeads * HeadDim);
            int[] ids = new int[tokens];
            for (int i = 0; i < tokens; i++)
            {
                ids[i] = rng.Next(0, 128_000);
            }

            long appendBytes = 2L * keys.Length * layers;
            var appendSeconds = new double[reps];
            for (int r = 0; r < reps; r++)
            {
                string id = (await client.CreateContextAsync(modelName, "client-bench", $"dotnet-append-{Guid.NewGuid():N}").ConfigureAwait(false)).Id;
                long t0 = Stopwatch.GetTimestamp();
                using (KvAppendStream stream = client.OpenAppend(id))
                {
                    for (int layer = 0; layer < layers; layer++)
                    {
                        await stream.WriteLayerAsync(layer, ids, keys, values, KvDType.BF16, KvHeads, HeadDim).ConfigureAwait(false);
                    }

                    await stream.CompleteAsync().ConfigureAwait(false);
                }

                appendSeconds[r] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                await client.DeleteContextAsync(id).ConfigureAwait(false);
            }

            string attendId = (await client.CreateContextAsync(modelName, "client-bench", $"dotnet-attend-{Guid.NewGuid():N}").ConfigureAwait(false)).Id;
            int attendBytesPerSide = attendCtx * KvHeads * HeadDim * 2;
            await client.AppendLayerAsync(attendId, 0, ids[..attendCtx], keys.AsMemory(0, attendBytesPerSide), values.AsMemory(0, attendBytesPerSide), KvDType.BF16, KvHeads, HeadDim).ConfigureAwait(false);
            var exact = new Plan { Kind = PlanKind.Exact };
            var q = new float[QueryHeads * HeadDim];
            var rtt = new double[queries];
            var server = new double[queries];
            for (int i = -20; i < queries; i++)
            {
                for (int j = 0; j < q.Length; j++)
                {
                    q[j] = (float)(rng.NextDouble() * 2 - 1);
                }

                long t0 = Stopwatch.GetTimestamp();
                AttendResponse response = await client.Attention.AttendAsync(KvDbClient.BuildAttend(attendId, 0, q, 1, QueryHeads, HeadDim, plan: exact)).ConfigureAwait(false);
                KvDbClient.ToPartial(response, 1, QueryHeads, HeadDim);
                if (i >= 0)
                {
                    rtt[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    server[i] = response.Stats.ServerMicros;
                }
            }

            await client.DeleteContextAsync(attendId).ConfigureAwait(false);
            double appendP50 = Percentile.Median(appendSeconds);
            double rttP50 = Percentile.Median(rtt);
            new JsonLine()
                .Add("suite", "client").Add("client", "dotnet").Add("tokens", tokens).Add("layers", layers).Add("reps", reps)
                .Add("append_bytes", appendBytes).Add("append_p50_s", appendP50, 4).Add("append_bytes_per_s", appendBytes / appendP50, 0)
                .Add("attend_ctx", attendCtx).Add("queries", queries)
                .Add("attend_p50_us", rttP50, 1).Add("attend_server_p50_us", Percentile.Median(server), 1)
                .Add("attend_bytes_per_s", 2.0 * attendBytesPerSide / (rttP50 * 1e-6), 0)
                .WriteTo(Console.Out);
        }
        finally
        {
            if (local is not null)
            {
                await local.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>bf16 bits (truncated) of n standard normal floats, as bytes.</summary>
    private static byte[] Bf16Normal(Random rng, long n)
    {
        var bytes = new byte[n * 2];
        for (long i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            float x = (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
            ushort bits = (ushort)(BitConverter.SingleToUInt32Bits(x) >> 16);
            bytes[2 * i] = (byte)bits;
            bytes[(2 * i) + 1] = (byte)(bits >> 8);
        }

        return bytes;
    }
}

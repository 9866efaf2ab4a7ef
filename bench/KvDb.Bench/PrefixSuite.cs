using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// prefix: LookupPrefix latency for a 128K-token prompt whose whole prefix is cached (4 layers, 8 KV heads, d=128,
/// bf16, block 64 = 2048 chained blocks). Reports p50/p99 of the in-process store call and of the gRPC round trip.
/// </summary>
public static class PrefixSuite
{
    /// <summary>Runs the suite and prints one JSON line.</summary>
    public static async Task RunAsync(string[] args)
    {
        int tokens = (int)SuiteOptions.Get(args ?? [], "tokens", 128 * 1024);
        int iterations = (int)SuiteOptions.Get(args ?? [], "iterations", 200);
        const int layers = 4;
        const int kvHeads = 8;
        const int headDim = 128;
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CpuBudgetBytes = 6L << 30 }).ConfigureAwait(false);
        using var client = new KvDbClient(server.Address);
        await client.CreateModelAsync(new Model { Name = "bench", NumLayers = layers, NumQueryHeads = 32, NumKvHeads = kvHeads, HeadDim = headDim, Dtype = DType.Bf16 }).ConfigureAwait(false);
        Context ctx = await client.CreateContextAsync("bench", ns: "tenant").ConfigureAwait(false);
        var ids = new int[tokens];
        for (int i = 0; i < tokens; i++)
        {
            ids[i] = (int)((i * 2654435761L) % 128000);
        }

        var w = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = 16 * 1024, NumKvHeads = kvHeads, NumQueryHeads = 32, HeadDim = headDim });
        ByteString k = ByteString.CopyFrom(w.KeyBytes(KvDType.BF16, 0, 1024));
        ByteString v = ByteString.CopyFrom(w.ValueBytes(KvDType.BF16, 0, 1024));
        using (AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = client.Contexts.AppendKv())
        {
            for (int layer = 0; layer < layers; layer++)
            {
                for (int start = 0; start < tokens; start += 1024)
                {
                    var r = new AppendKvRequest
                    {
                        ContextId = ctx.Id,
                        Layer = layer,
                        Keys = new Tensor { Dtype = DType.Bf16, Data = k, Shape = { 1024, kvHeads, headDim } },
                        Values = new Tensor { Dtype = DType.Bf16, Data = v, Shape = { 1024, kvHeads, headDim } },
                    };
                    r.TokenIds.Add(ids.AsSpan(start, 1024).ToArray());
                    await call.RequestStream.WriteAsync(r).ConfigureAwait(false);
                }
            }

            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            await call.ResponseAsync.ConfigureAwait(false);
        }

        var inProcess = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            long n = server.Store.LookupPrefix("bench", "tenant", ids);
            inProcess[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            Check(n, tokens);
        }

        var request = new LookupPrefixRequest { Model = "bench", Namespace = "tenant" };
        request.TokenIds.Add(ids);
        var rpc = new double[iterations];
        for (int i = 0; i < iterations; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            LookupPrefixResponse r = await client.Contexts.LookupPrefixAsync(request).ConfigureAwait(false);
            rpc[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            Check(r.NumTokens, tokens);
        }

        Array.Sort(inProcess);
        Array.Sort(rpc);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"suite\":\"prefix\",\"tokens\":{tokens},\"blocks\":{tokens / 64},\"layers\":{layers},\"iterations\":{iterations},\"p50_us\":{inProcess[iterations / 2]:F1},\"p99_us\":{inProcess[iterations * 99 / 100]:F1},\"rpc_p50_us\":{rpc[iterations / 2]:F1},\"rpc_p99_us\":{rpc[iterations * 99 / 100]:F1}}}"));
    }

    private static void Check(long found, int expected)
    {
        if (found != expected)
        {
            throw new InvalidOperationException($"LookupPrefix found {found} tokens, expected {expected}");
        }
    }
}

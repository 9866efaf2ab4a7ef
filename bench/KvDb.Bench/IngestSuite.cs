using System.Diagnostics;
using System.Globalization;
using System.Net;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Grpc.Net.Client;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvDb.Bench;

/// <summary>
/// ingest: append one 128K-token context (4 layers, 8 KV heads, d=128, bf16 = 2 GiB of K+V) over loopback gRPC and
/// compare with streaming the same bytes in messages of the same size to a bench-only raw sink in the same run.
/// gbps = memory-only store in steady state (second append after deleting the first, so arena memory is recycled);
/// cold_gbps = the first append (fresh memory is faulted in); durable_* = the same into a store with a data directory
/// (acknowledged after the WAL commit). Payloads are pre-generated (a few distinct chunk buffers reused), so data
/// generation is not timed.
/// </summary>
public static class IngestSuite
{
    private const int KvHeads = 8;
    private const int HeadDim = 128;
    private const KvDType Dtype = KvDType.BF16;

    /// <summary>Runs the suite and prints one JSON line.</summary>
    public static async Task RunAsync(string[] args)
    {
        int tokens = (int)SuiteOptions.Get(args ?? [], "tokens", 128 * 1024);
        int layers = (int)SuiteOptions.Get(args ?? [], "layers", 4);
        int chunk = (int)SuiteOptions.Get(args ?? [], "chunk", 1024);
        bool durable = SuiteOptions.Get(args ?? [], "durable", 1) != 0;
        var payloads = Payloads(chunk);
        long kvBytes = (long)tokens * layers * 2 * KvHeads * HeadDim * 2;

        double raw = await RawAsync(tokens, layers, chunk, payloads).ConfigureAwait(false);
        (double memCold, double mem) = await KvDbAsync(tokens, layers, chunk, payloads, null).ConfigureAwait(false);
        double raw2 = await RawAsync(tokens, layers, chunk, payloads).ConfigureAwait(false);
        raw = Math.Min(raw, raw2);
        double disk = 0;
        double diskCold = 0;
        if (durable)
        {
            string dir = SuiteOptions.TempDir("ingest");
            try
            {
                (diskCold, disk) = await KvDbAsync(tokens, layers, chunk, payloads, dir).ConfigureAwait(false);
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        double gbps = kvBytes / mem / 1e9;
        double rawGbps = kvBytes / raw / 1e9;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"suite\":\"ingest\",\"tokens\":{tokens},\"layers\":{layers},\"kv_heads\":{KvHeads},\"head_dim\":{HeadDim},\"dtype\":\"bf16\",\"chunk_tokens\":{chunk},\"bytes\":{kvBytes},\"gbps\":{gbps:F3},\"raw_gbps\":{rawGbps:F3},\"ratio\":{gbps / rawGbps:F3},\"cold_gbps\":{kvBytes / memCold / 1e9:F3},\"durable_gbps\":{(durable ? kvBytes / disk / 1e9 : 0):F3},\"durable_cold_gbps\":{(durable ? kvBytes / diskCold / 1e9 : 0):F3},\"seconds\":{mem:F3},\"raw_seconds\":{raw:F3}}}"));
    }

    private static (ByteString Keys, ByteString Values)[] Payloads(int chunk)
    {
        var w = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = 16 * chunk, NumKvHeads = KvHeads, NumQueryHeads = 32, HeadDim = HeadDim });
        var p = new (ByteString, ByteString)[8];
        for (int i = 0; i < p.Length; i++)
        {
            p[i] = (ByteString.CopyFrom(w.KeyBytes(Dtype, i * chunk, chunk)), ByteString.CopyFrom(w.ValueBytes(Dtype, i * chunk, chunk)));
        }

        return p;
    }

    private static async Task<(double Cold, double Warm)> KvDbAsync(int tokens, int layers, int chunk, (ByteString Keys, ByteString Values)[] payloads, string? dataDirectory)
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CpuBudgetBytes = 6L << 30, DataDirectory = dataDirectory }).ConfigureAwait(false);
        using var client = new KvDbClient(server.Address);
        await client.CreateModelAsync(new Model { Name = "bench", NumLayers = layers, NumQueryHeads = 32, NumKvHeads = KvHeads, HeadDim = HeadDim, Dtype = DType.Bf16 }).ConfigureAwait(false);
        // The first pass faults in fresh arena memory; the second (after deleting the first context) is steady state.
        double cold = await AppendOnceAsync(client, tokens, layers, chunk, payloads).ConfigureAwait(false);
        double warm = await AppendOnceAsync(client, tokens, layers, chunk, payloads).ConfigureAwait(false);
        return (cold, warm);
    }

    private static async Task<double> AppendOnceAsync(KvDbClient client, int tokens, int layers, int chunk, (ByteString Keys, ByteString Values)[] payloads)
    {
        Context ctx = await client.CreateContextAsync("bench").ConfigureAwait(false);
        var requests = new List<AppendKvRequest>();
        for (int layer = 0; layer < layers; layer++)
        {
            for (int start = 0, i = 0; start < tokens; start += chunk, i++)
            {
                int n = Math.Min(chunk, tokens - start);
                (ByteString k, ByteString v) = payloads[i % payloads.Length];
                var r = new AppendKvRequest
                {
                    ContextId = ctx.Id,
                    Layer = layer,
                    Keys = new Tensor { Dtype = DType.Bf16, Data = k, Shape = { n, KvHeads, HeadDim } },
                    Values = new Tensor { Dtype = DType.Bf16, Data = v, Shape = { n, KvHeads, HeadDim } },
                };
                for (int t = 0; t < n; t++)
                {
                    r.TokenIds.Add(start + t);
                }

                requests.Add(r);
            }
        }

        var clock = Stopwatch.StartNew();
        using (AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = client.Contexts.AppendKv())
        {
            foreach (AppendKvRequest r in requests)
            {
                await call.RequestStream.WriteAsync(r).ConfigureAwait(false);
            }

            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            AppendKvResponse ack = await call.ResponseAsync.ConfigureAwait(false);
            if (ack.NumTokens != tokens)
            {
                throw new InvalidOperationException($"acknowledged {ack.NumTokens} tokens, expected {tokens}");
            }
        }

        double seconds = clock.Elapsed.TotalSeconds;
        await client.DeleteContextAsync(ctx.Id).ConfigureAwait(false);
        return seconds;
    }

    private static async Task<double> RawAsync(int tokens, int layers, int chunk, (ByteString Keys, ByteString Values)[] payloads)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2);
            k.Limits.MaxRequestBodySize = null;
        });
        builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = 64 << 20);
        builder.Services.AddSingleton<RawSink>();
        builder.Services.AddSingleton<IServiceMethodProvider<RawSink>, RawSink.Provider>();
        await using WebApplication app = builder.Build();
        app.MapGrpcService<RawSink>();
        await app.StartAsync().ConfigureAwait(false);
        string address = app.Urls.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal);
        using var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxSendMessageSize = null, MaxReceiveMessageSize = null });

        // The same bytes per message as an AppendKv chunk: token ids, keys and values.
        var messages = new byte[payloads.Length][];
        for (int i = 0; i < payloads.Length; i++)
        {
            messages[i] = new byte[(chunk * 4) + payloads[i].Keys.Length + payloads[i].Values.Length];
            payloads[i].Keys.Span.CopyTo(messages[i].AsSpan(chunk * 4));
            payloads[i].Values.Span.CopyTo(messages[i].AsSpan((chunk * 4) + payloads[i].Keys.Length));
        }

        var clock = Stopwatch.StartNew();
        using (AsyncClientStreamingCall<byte[], byte[]> call = channel.CreateCallInvoker().AsyncClientStreamingCall(RawSink.Method, null, new CallOptions()))
        {
            for (int layer = 0; layer < layers; layer++)
            {
                for (int start = 0, i = 0; start < tokens; start += chunk, i++)
                {
                    await call.RequestStream.WriteAsync(messages[i % messages.Length]).ConfigureAwait(false);
                }
            }

            await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            await call.ResponseAsync.ConfigureAwait(false);
        }

        double seconds = clock.Elapsed.TotalSeconds;
        await app.StopAsync().ConfigureAwait(false);
        return seconds;
    }
}

using System.Diagnostics;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Cli;

/// <summary>
/// The main job end to end: an in-process server, a synthetic Llama-3-8B-shaped context streamed over
/// gRPC, exact attention queries (whole context, and excluding a local window merged back on the
/// client), each checked against the f64 reference.
/// </summary>
internal static class DemoCommand
{
    private const int QueryHeads = 32;
    private const int KvHeads = 8;
    private const int HeadDim = 128;
    private const int LocalWindow = 256;
    private const KvDType Dtype = KvDType.BF16;

    public static async Task<int> RunAsync(CliOptions options)
    {
        int tokens = options.GetInt("tokens", 32 * 1024);
        int layers = options.GetInt("layers", 4);
        int queriesPerLayer = options.GetInt("queries", 4);
        if (tokens <= LocalWindow || layers <= 0 || queriesPerLayer <= 0)
        {
            throw new ArgumentException($"--tokens must exceed {LocalWindow}; --layers and --queries must be ≥ 1");
        }

        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0 }).ConfigureAwait(false);
        Console.WriteLine($"server    listening on {server.Address} (in-process, memory store)");
        using var client = new KvDbClient(server.Address);

        Model model = await client.CreateModelAsync(new Model
        {
            Name = "llama-3-8b-demo",
            NumLayers = layers,
            NumQueryHeads = QueryHeads,
            NumKvHeads = KvHeads,
            HeadDim = HeadDim,
            Dtype = DType.Bf16,
        }).ConfigureAwait(false);
        Console.WriteLine($"model     {model.Name}: {model.NumLayers} layers, {model.NumQueryHeads} query heads, {model.NumKvHeads} kv heads, head_dim {model.HeadDim}, bf16, block {model.BlockSize}, scale {model.SoftmaxScale:G6}");

        Context context = await client.CreateContextAsync(model.Name).ConfigureAwait(false);
        var workloads = new SyntheticWorkload[layers];
        for (int l = 0; l < layers; l++)
        {
            workloads[l] = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = HeadDim, Layer = l });
        }

        var tokenIds = new int[tokens];
        workloads[0].FillTokenIds(0, tokenIds);
        long appendBytes = 0;
        var appendClock = Stopwatch.StartNew();
        using (KvAppendStream stream = client.OpenAppend(context.Id))
        {
            const int chunk = 1024;
            for (int l = 0; l < layers; l++)
            {
                for (int start = 0; start < tokens; start += chunk)
                {
                    int n = Math.Min(chunk, tokens - start);
                    byte[] k = workloads[l].KeyBytes(Dtype, start, n);
                    byte[] v = workloads[l].ValueBytes(Dtype, start, n);
                    await stream.WriteAsync(l, tokenIds.AsSpan(start, n), k, v, Dtype, KvHeads, HeadDim).ConfigureAwait(false);
                    appendBytes += k.Length + v.Length;
                }
            }

            AppendKvResponse ack = await stream.CompleteAsync().ConfigureAwait(false);
            appendClock.Stop();
            Console.WriteLine($"append    {ack.NumTokens} tokens × {layers} layers, {appendBytes / 1e6:F1} MB over gRPC in {appendClock.Elapsed.TotalSeconds:F2} s (includes generating the data)");
        }

        double worstOut = 0;
        double worstLse = 0;
        double worstMerged = 0;
        var serverMicros = new List<double>();
        for (int l = 0; l < layers; l++)
        {
            float[] keys = Decode(workloads[l].KeyBytes(Dtype, 0, tokens));
            float[] values = Decode(workloads[l].ValueBytes(Dtype, 0, tokens));
            for (int qi = 0; qi < queriesPerLayer; qi++)
            {
                float[] query = workloads[l].Queries(1, (ulong)(1000 + qi));
                var rtt = Stopwatch.StartNew();
                AttentionPartial full = await client.AttendAsync(context.Id, l, query, 1, QueryHeads, HeadDim, plan: new Plan { Kind = PlanKind.Exact }).ConfigureAwait(false);
                rtt.Stop();
                (double[] refOut, double[] refLse) = ReferenceAttention.Compute(keys, values, query, 1, QueryHeads, KvHeads, HeadDim, model.SoftmaxScale);
                double outErr = ReferenceAttention.MaxAbsError(full.Output, refOut);
                double lseErr = ReferenceAttention.MaxAbsError(full.Lse, refLse);

                // The engine's view: KvDb answers all but the local window; the window's partial is merged in locally.
                AttentionPartial remote = await client.AttendAsync(context.Id, l, query, 1, QueryHeads, HeadDim, tokens - LocalWindow, tokens).ConfigureAwait(false);
                (double[] winOut, double[] winLse) = ReferenceAttention.Compute(keys, values, query, 1, QueryHeads, KvHeads, HeadDim, model.SoftmaxScale, 0, tokens - LocalWindow);
                var local = new AttentionPartial(ToFloat(winOut), ToFloat(winLse), 1, QueryHeads, HeadDim);
                AttentionPartial merged = AttentionPartial.Merge(remote, local);
                double mergedErr = ReferenceAttention.MaxAbsError(merged.Output, refOut);

                worstOut = Math.Max(worstOut, outErr);
                worstLse = Math.Max(worstLse, lseErr);
                worstMerged = Math.Max(worstMerged, mergedErr);
                serverMicros.Add(full.Stats!.ServerMicros);
                Console.WriteLine(
                    $"attend    layer {l} query {qi}: plan {full.Stats.Plan}, {full.Stats.TokensAttended} (token, kv head) pairs, {full.Stats.BytesRead / 1e6:F1} MB read, " +
                    $"server {full.Stats.ServerMicros / 1000:F2} ms, round trip {rtt.Elapsed.TotalMilliseconds:F2} ms, max |Δoutput| {outErr:E2}, max |Δlse| {lseErr:E2}, merged-window max |Δ| {mergedErr:E2}");
            }
        }

        serverMicros.Sort();
        double median = serverMicros[serverMicros.Count / 2];
        long bytesPerQuery = 2L * tokens * KvHeads * HeadDim * KvDTypeInfo.SizeOf(Dtype);
        Console.WriteLine($"summary   {serverMicros.Count} queries over {tokens} tokens: median server time {median / 1000:F2} ms ({bytesPerQuery / (median * 1e3):F1} GB/s of K/V), " +
                          $"max |Δoutput| {worstOut:E2}, max |Δlse| {worstLse:E2}, max merged |Δ| {worstMerged:E2}");
        await client.DeleteContextAsync(context.Id).ConfigureAwait(false);
        bool ok = worstOut <= 1e-4 && worstLse <= 1e-4 && worstMerged <= 1e-4;
        Console.WriteLine(ok ? "result    OK: every answer matches the f64 reference" : "result    FAILED: an answer differs from the f64 reference");
        return ok ? 0 : 1;
    }

    private static float[] Decode(byte[] bytes) => ElementConversion.ToSingle(Dtype, bytes);

    private static float[] ToFloat(double[] values)
    {
        var f = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            f[i] = (float)values[i];
        }

        return f;
    }
}

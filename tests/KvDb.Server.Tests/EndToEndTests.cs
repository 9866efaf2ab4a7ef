using Grpc.Core;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Workload;

using KvDb.Server.Services;

namespace KvDb.Server.Tests;

public sealed class EndToEndTests : IClassFixture<ServerFixture>
{
    private readonly ServerFixture _fx;

    public EndToEndTests(ServerFixture fx)
    {
        _fx = fx;
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.Bf16)]
    public async Task Create_append_in_chunks_and_layers_attend_and_delete(DType dtype)
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("e2e-" + dtype, dtype));
        Assert.Equal(16, model.BlockSize);
        Assert.Equal(1 / MathF.Sqrt(32), model.SoftmaxScale, 6);

        Context ctx = await client.CreateContextAsync(model.Name);
        Assert.StartsWith("ctx-", ctx.Id, StringComparison.Ordinal);
        Assert.Equal(0, ctx.NumTokens);

        const int tokens = 301;
        KvDType kd = TestModels.Kernel(dtype);
        var ids = new int[tokens];
        TestModels.Workload(model, tokens, 0).FillTokenIds(0, ids);
        using (KvAppendStream stream = client.OpenAppend(ctx.Id))
        {
            // Uneven chunks, layers interleaved: positions continue per layer.
            int[] cuts = [0, 7, 64, 65, 200, tokens];
            for (int c = 0; c + 1 < cuts.Length; c++)
            {
                for (int layer = 0; layer < 2; layer++)
                {
                    SyntheticWorkload w = TestModels.Workload(model, tokens, layer);
                    int n = cuts[c + 1] - cuts[c];
                    await stream.WriteAsync(layer, ids.AsSpan(cuts[c], n), w.KeyBytes(kd, cuts[c], n), w.ValueBytes(kd, cuts[c], n), kd, model.NumKvHeads, model.HeadDim);
                }
            }

            AppendKvResponse ack = await stream.CompleteAsync();
            Assert.Equal(tokens, ack.NumTokens);
        }

        Context got = await client.GetContextAsync(ctx.Id);
        Assert.Equal(tokens, got.NumTokens);
        Assert.Equal([tokens, tokens], got.LayerTokens);

        for (int layer = 0; layer < 2; layer++)
        {
            SyntheticWorkload w = TestModels.Workload(model, tokens, layer);
            float[] keys = ElementConversion.ToSingle(kd, w.KeyBytes(kd, 0, tokens));
            float[] values = ElementConversion.ToSingle(kd, w.ValueBytes(kd, 0, tokens));
            float[] q = w.Queries(2, 99);
            AttentionPartial p = await client.AttendAsync(ctx.Id, layer, q, 2, model.NumQueryHeads, model.HeadDim);
            (double[] refOut, double[] refLse) = ReferenceAttention.Compute(keys, values, q, 2, model.NumQueryHeads, model.NumKvHeads, model.HeadDim, model.SoftmaxScale);
            Assert.True(ReferenceAttention.RelativeL2(p.Output, refOut) <= 1e-5, "output differs from the f64 reference");
            Assert.True(ReferenceAttention.MaxAbsError(p.Lse, refLse) <= 1e-4, "lse differs from the f64 reference");
            Assert.Equal("exact", p.Stats!.Plan);
            Assert.Equal(2L * tokens * model.NumKvHeads, p.Stats.TokensAttended);
            Assert.Equal(2L * tokens * model.NumKvHeads * model.HeadDim * KvDTypeInfo.SizeOf(kd), p.Stats.BytesRead);
            Assert.True(p.Stats.ServerMicros > 0);
        }

        await client.DeleteContextAsync(ctx.Id);
        RpcException gone = await Assert.ThrowsAsync<RpcException>(() => client.GetContextAsync(ctx.Id));
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task Streaming_attend_answers_each_request_in_order_and_matches_unary()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("e2e-stream"));
        Context ctx = await client.CreateContextAsync(model.Name, id: "stream-ctx");
        await Load(client, model, ctx.Id, 150);

        SyntheticWorkload w = TestModels.Workload(model, 150, 1);
        using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = client.Attention.AttendStream();
        var queries = new List<float[]>();
        for (int i = 0; i < 3; i++)
        {
            float[] q = w.Queries(1, (ulong)i);
            queries.Add(q);
            await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(ctx.Id, 1, q, 1, model.NumQueryHeads, model.HeadDim, excludeStart: 100, excludeEnd: 150));
        }

        await call.RequestStream.CompleteAsync();
        int k = 0;
        await foreach (AttendResponse r in call.ResponseStream.ReadAllAsync())
        {
            AttentionPartial streamed = KvDbClient.ToPartial(r, 1, model.NumQueryHeads, model.HeadDim);
            AttentionPartial unary = await client.AttendAsync(ctx.Id, 1, queries[k], 1, model.NumQueryHeads, model.HeadDim, 100, 150);
            Assert.Equal(unary.Output, streamed.Output);
            Assert.Equal(unary.Lse, streamed.Lse);
            Assert.Equal(100L * model.NumKvHeads, streamed.Stats!.TokensAttended);
            k++;
        }

        Assert.Equal(3, k);
    }

    [Fact]
    public async Task Pipelined_stream_answers_many_layers_in_request_order()
    {
        // More requests than the pipeline's depth, alternating layers and sizes, so later (smaller) requests could finish
        // before earlier ones: every response must still be the one for its request.
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("e2e-pipeline"));
        Context ctx = await client.CreateContextAsync(model.Name, id: "pipeline-ctx");
        await Load(client, model, ctx.Id, 300);

        using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = client.Attention.AttendStream();
        var sent = new List<(int Layer, float[] Queries, int Count)>();
        for (int i = 0; i < 3 * AttentionService.StreamPipelineDepth; i++)
        {
            int layer = i % 2;
            int count = i % 3 == 0 ? 16 : 1;
            float[] q = TestModels.Workload(model, 300, layer).Queries(count, (ulong)(100 + i));
            sent.Add((layer, q, count));
            await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(ctx.Id, layer, q, count, model.NumQueryHeads, model.HeadDim));
        }

        await call.RequestStream.CompleteAsync();
        int k = 0;
        await foreach (AttendResponse r in call.ResponseStream.ReadAllAsync())
        {
            (int layer, float[] q, int count) = sent[k];
            AttentionPartial streamed = KvDbClient.ToPartial(r, count, model.NumQueryHeads, model.HeadDim);
            AttentionPartial unary = await client.AttendAsync(ctx.Id, layer, q, count, model.NumQueryHeads, model.HeadDim);
            Assert.Equal(unary.Output, streamed.Output);
            Assert.Equal(unary.Lse, streamed.Lse);
            k++;
        }

        Assert.Equal(sent.Count, k);
    }

    [Fact]
    public async Task Stream_ends_with_the_first_failed_requests_status_after_the_earlier_answers()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("e2e-stream-error"));
        Context ctx = await client.CreateContextAsync(model.Name, id: "stream-error-ctx");
        await Load(client, model, ctx.Id, 150);
        float[] q = TestModels.Workload(model, 150, 0).Queries(1, 3);

        using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = client.Attention.AttendStream();
        await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(ctx.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim));
        await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(ctx.Id, model.NumLayers, q, 1, model.NumQueryHeads, model.HeadDim));
        try
        {
            // The server may already have ended the stream on the bad request (it answers while the client still writes).
            await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(ctx.Id, 1, q, 1, model.NumQueryHeads, model.HeadDim));
            await call.RequestStream.CompleteAsync();
        }
        catch (RpcException)
        {
        }
        catch (InvalidOperationException)
        {
        }

        var answered = new List<AttendResponse>();
        RpcException failed = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (AttendResponse r in call.ResponseStream.ReadAllAsync())
            {
                answered.Add(r);
            }
        });

        Assert.Equal(StatusCode.InvalidArgument, failed.StatusCode);
        AttendResponse only = Assert.Single(answered);
        AttentionPartial first = KvDbClient.ToPartial(only, 1, model.NumQueryHeads, model.HeadDim);
        AttentionPartial unary = await client.AttendAsync(ctx.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim);
        Assert.Equal(unary.Output, first.Output);
        Assert.Equal(150, (await client.GetContextAsync(ctx.Id)).NumTokens);
    }

    [Fact]
    public async Task Remote_partial_merged_with_local_window_equals_exact_attention()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("e2e-merge"));
        Context ctx = await client.CreateContextAsync(model.Name);
        const int n = 500;
        const int window = 64;
        await Load(client, model, ctx.Id, n);
        SyntheticWorkload w = TestModels.Workload(model, n, 0);
        float[] keys = new float[n * model.NumKvHeads * model.HeadDim];
        float[] values = new float[keys.Length];
        w.FillKeys(0, n, keys);
        w.FillValues(0, n, values);
        float[] q = w.Queries(1, 5);

        AttentionPartial remote = await client.AttendAsync(ctx.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim, n - window, n);
        AttentionPartial local = await client.AttendAsync(ctx.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim, 0, n - window);
        AttentionPartial merged = AttentionPartial.Merge(remote, local);
        (double[] refOut, double[] refLse) = ReferenceAttention.Compute(keys, values, q, 1, model.NumQueryHeads, model.NumKvHeads, model.HeadDim, model.SoftmaxScale);
        Assert.True(ReferenceAttention.RelativeL2(merged.Output, refOut) <= 1e-5);
        Assert.True(ReferenceAttention.MaxAbsError(merged.Lse, refLse) <= 1e-4);

        AttentionPartial identity = AttentionPartial.Merge(merged, AttentionPartial.Empty(1, model.NumQueryHeads, model.HeadDim));
        Assert.Equal(merged.Output, identity.Output);
        Assert.Equal(merged.Lse, identity.Lse);
    }

    [Fact]
    public async Task Prefix_lookup_and_create_from_prefix_share_the_cached_kv()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("e2e-prefix"));
        Context a = await client.CreateContextAsync(model.Name, ns: "docs");
        await Load(client, model, a.Id, 200);
        var ids = new int[200];
        TestModels.Workload(model, 200, 0).FillTokenIds(0, ids);

        Assert.Equal(200, await client.LookupPrefixAsync(model.Name, "docs", ids));
        Assert.Equal(120, await client.LookupPrefixAsync(model.Name, "docs", ids.AsSpan(0, 120).ToArray()));
        Assert.Equal(0, await client.LookupPrefixAsync(model.Name, "other", ids));
        int[] diverged = (int[])ids.Clone();
        diverged[77] ^= 1;
        Assert.Equal(77, await client.LookupPrefixAsync(model.Name, "docs", diverged));

        Context b = await client.CreateContextAsync(model.Name, ns: "docs", prefixTokenIds: diverged);
        Assert.Equal(77, b.NumTokens);
        SyntheticWorkload w = TestModels.Workload(model, 200, 0);
        float[] q = w.Queries(1, 3);
        AttentionPartial fromPrefix = await client.AttendAsync(b.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim);
        AttentionPartial original = await client.AttendAsync(a.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim, 77, 200);
        Assert.Equal(original.Output, fromPrefix.Output);
        Assert.Equal(original.Lse, fromPrefix.Lse);

        await client.DeleteContextAsync(a.Id);
        AttentionPartial after = await client.AttendAsync(b.Id, 0, q, 1, model.NumQueryHeads, model.HeadDim);
        Assert.Equal(fromPrefix.Output, after.Output);
    }

    [Fact]
    public async Task Health_service_reports_serving()
    {
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(_fx.Server.Address);
        var health = new Grpc.Health.V1.Health.HealthClient(channel);
        Grpc.Health.V1.HealthCheckResponse r = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, r.Status);
    }

    internal static async Task Load(KvDbClient client, Model model, string contextId, int tokens)
    {
        KvDType kd = TestModels.Kernel(model.Dtype);
        var ids = new int[tokens];
        TestModels.Workload(model, tokens, 0).FillTokenIds(0, ids);
        using KvAppendStream stream = client.OpenAppend(contextId);
        for (int layer = 0; layer < model.NumLayers; layer++)
        {
            SyntheticWorkload w = TestModels.Workload(model, tokens, layer);
            await stream.WriteLayerAsync(layer, ids, w.KeyBytes(kd, 0, tokens), w.ValueBytes(kd, 0, tokens), kd, model.NumKvHeads, model.HeadDim, chunkTokens: 37);
        }

        await stream.CompleteAsync();
    }
}

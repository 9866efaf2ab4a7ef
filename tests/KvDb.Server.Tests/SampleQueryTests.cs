using Grpc.Core;
using KvDb.Client;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.Workload;

namespace KvDb.Server.Tests;

/// <summary>Sample queries sent with AppendKv reach the index catalog, only once the append commits.</summary>
public sealed class SampleQueryTests : IClassFixture<ServerFixture>
{
    private readonly ServerFixture _fx;

    public SampleQueryTests(ServerFixture fx)
    {
        _fx = fx;
    }

    [Fact]
    public async Task Sample_queries_sent_with_an_append_are_kept_per_layer_after_the_commit()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("samples-ok"));
        Context c = await client.CreateContextAsync(model.Name);
        int rowFloats = model.NumQueryHeads * model.HeadDim;
        KvDType kd = TestModels.Kernel(model.Dtype);
        var ids = new int[40];
        TestModels.Workload(model, 40, 0).FillTokenIds(0, ids);
        using (KvAppendStream stream = client.OpenAppend(c.Id))
        {
            for (int layer = 0; layer < model.NumLayers; layer++)
            {
                SyntheticWorkload w = TestModels.Workload(model, 40, layer);
                await stream.WriteLayerAsync(layer, ids, w.KeyBytes(kd, 0, 40), w.ValueBytes(kd, 0, 40), kd, model.NumKvHeads, model.HeadDim);
            }

            await stream.WriteSampleQueriesAsync(0, Rows(5, rowFloats, seed: 1), model.NumQueryHeads, model.HeadDim);
            await stream.WriteSampleQueriesAsync(1, Rows(3, rowFloats, seed: 2), model.NumQueryHeads, model.HeadDim);

            // Not counted before the commit: a stream that fails must leave no samples behind.
            Assert.Equal(0, _fx.Server.Executor.Indexes.SampleQueryCount(c.Id, 0));
            await stream.WriteSampleQueriesAsync(0, Rows(2, rowFloats, seed: 3), model.NumQueryHeads, model.HeadDim);
            await stream.CompleteAsync();
        }

        Assert.Equal(7, _fx.Server.Executor.Indexes.SampleQueryCount(c.Id, 0));
        Assert.Equal(3, _fx.Server.Executor.Indexes.SampleQueryCount(c.Id, 1));

        // A prefill's worth is thinned to the cap (evenly spaced rows), not refused.
        using (KvAppendStream stream = client.OpenAppend(c.Id))
        {
            await stream.WriteSampleQueriesAsync(1, Rows(1000, rowFloats, seed: 4), model.NumQueryHeads, model.HeadDim);
            await stream.CompleteAsync();
        }

        Assert.Equal(SampleQueryLog.MaxPerLayer, _fx.Server.Executor.Indexes.SampleQueryCount(c.Id, 1));
        Assert.Equal(40, (await client.GetContextAsync(c.Id)).NumTokens);
    }

    [Fact]
    public async Task Misshapen_sample_queries_fail_the_append_and_leave_the_context_and_samples_untouched()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("samples-bad"));
        Context c = await client.CreateContextAsync(model.Name);
        KvDType kd = TestModels.Kernel(model.Dtype);
        var ids = new int[16];
        TestModels.Workload(model, 16, 0).FillTokenIds(0, ids);
        SyntheticWorkload w = TestModels.Workload(model, 16, 0);
        var request = new AppendKvRequest
        {
            ContextId = c.Id,
            Layer = 0,
            Keys = KvDb.Protocol.TensorCodec.FromBytes(kd, w.KeyBytes(kd, 0, 16), 16, model.NumKvHeads, model.HeadDim),
            Values = KvDb.Protocol.TensorCodec.FromBytes(kd, w.ValueBytes(kd, 0, 16), 16, model.NumKvHeads, model.HeadDim),
            SampleQueries = KvDb.Protocol.TensorCodec.FromSingles(new float[2 * model.NumQueryHeads * (model.HeadDim - 1)], 2, model.NumQueryHeads, model.HeadDim - 1),
        };
        request.TokenIds.Add(ids);

        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = client.Contexts.AppendKv();
        try
        {
            await call.RequestStream.WriteAsync(request);
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception write) when (write is RpcException or InvalidOperationException)
        {
            // The server may end the call before the client completes it; its status is in ResponseAsync.
        }

        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("sample_queries", e.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, (await client.GetContextAsync(c.Id)).NumTokens);
        Assert.Equal(0, _fx.Server.Executor.Indexes.SampleQueryCount(c.Id, 0));
    }

    private static float[] Rows(int rows, int rowFloats, int seed)
    {
        var random = new Random(seed);
        var values = new float[rows * rowFloats];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)(random.NextDouble() - 0.5);
        }

        return values;
    }
}

using Google.Protobuf;
using Grpc.Core;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Server.Tests;

/// <summary>Every malformed request gets the right status, a message that says what to send, and leaves stored data unchanged.</summary>
public sealed class BadInputTests : IClassFixture<ServerFixture>, IAsyncLifetime
{
    private const int Tokens = 80;
    private readonly ServerFixture _fx;
    private Model _model = null!;
    private string _ctx = null!;
    private AttentionPartial _before = null!;
    private float[] _query = null!;

    public BadInputTests(ServerFixture fx)
    {
        _fx = fx;
    }

    public async Task InitializeAsync()
    {
        _model = await _fx.Client.CreateModelAsync(TestModels.Small("bad-input"));
        _ctx = (await _fx.Client.CreateContextAsync(_model.Name)).Id;
        await EndToEndTests.Load(_fx.Client, _model, _ctx, Tokens);
        _query = TestModels.Workload(_model, Tokens, 0).Queries(1, 1);
        _before = await Attend();
    }

    public Task DisposeAsync() => Task.CompletedTask;

    public static TheoryData<string> BadAppends => new()
    {
        "wrong-shape", "wrong-dtype", "short-data", "unknown-context", "layer-out-of-range", "empty-tensor", "token-count-mismatch", "missing-values", "token-ids-disagree",
    };

    [Theory]
    [MemberData(nameof(BadAppends))]
    public async Task Bad_append_is_rejected_and_the_whole_stream_rolled_back(string kind)
    {
        SyntheticWorkload w = TestModels.Workload(_model, Tokens + 10, 0);
        var ids = new int[Tokens + 10];
        w.FillTokenIds(0, ids);
        AppendKvRequest good = Chunk(0, ids[Tokens..], w.KeyBytes(KvDType.F32, Tokens, 10), w.ValueBytes(KvDType.F32, Tokens, 10), 10);
        AppendKvRequest bad = good.Clone();
        bad.Layer = 1;
        StatusCode expected = StatusCode.InvalidArgument;
        switch (kind)
        {
            case "wrong-shape":
                bad.Keys.Shape[2] = 16;
                break;
            case "wrong-dtype":
                bad.Keys.Dtype = DType.F16;
                break;
            case "short-data":
                bad.Values.Data = ByteString.CopyFrom(bad.Values.Data.Span[..^4]);
                break;
            case "unknown-context":
                good.ContextId = bad.ContextId = "no-such-context";
                expected = StatusCode.NotFound;
                break;
            case "layer-out-of-range":
                bad.Layer = 2;
                break;
            case "empty-tensor":
                bad.Keys.Shape[0] = 0;
                bad.Keys.Data = ByteString.Empty;
                break;
            case "token-count-mismatch":
                bad.TokenIds.RemoveAt(0);
                break;
            case "missing-values":
                bad.Values = null;
                break;
            case "token-ids-disagree":
                bad.TokenIds[3] += 1;
                break;
        }

        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = _fx.Client.Contexts.AppendKv();
        try
        {
            await call.RequestStream.WriteAsync(good);
            await call.RequestStream.WriteAsync(bad);
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception write) when (write is RpcException or InvalidOperationException)
        {
            // The server may reject the stream (e.g. an unknown context at its first message) and end the call
            // before the client has written everything; the write then fails with a local status, and the
            // server's own status is in ResponseAsync.
        }

        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseAsync);
        Assert.Equal(expected, e.StatusCode);
        Assert.False(string.IsNullOrWhiteSpace(e.Status.Detail));
        await AssertUnchanged();
    }

    public static TheoryData<string> BadAttends => new()
    {
        "wrong-heads", "wrong-dim", "short-data", "unknown-context", "layer-out-of-range", "nan", "inf", "empty", "missing", "unspecified-dtype", "negative-exclude", "bad-plan", "bad-epsilon",
    };

    [Theory]
    [MemberData(nameof(BadAttends))]
    public async Task Bad_attend_is_rejected_with_a_helpful_status(string kind)
    {
        AttendRequest r = KvDbClient.BuildAttend(_ctx, 0, _query, 1, _model.NumQueryHeads, _model.HeadDim);
        (StatusCode expected, string mentions) = Spoil(r, kind);
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.Attention.AttendAsync(r));
        Assert.Equal(expected, e.StatusCode);
        Assert.Contains(mentions, e.Status.Detail, StringComparison.OrdinalIgnoreCase);
        await AssertUnchanged();
    }

    [Theory]
    [MemberData(nameof(BadAttends))]
    public async Task Bad_explain_gets_the_status_attend_gets(string kind)
    {
        AttendRequest r = KvDbClient.BuildAttend(_ctx, 0, _query, 1, _model.NumQueryHeads, _model.HeadDim);
        (StatusCode expected, _) = Spoil(r, kind);
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.Attention.ExplainAsync(r));
        Assert.Equal(expected, e.StatusCode);
        await AssertUnchanged();
    }

    /// <summary>Makes <paramref name="r"/> bad in the way <paramref name="kind"/> names; returns the status it must get and a word its message must mention.</summary>
    private (StatusCode Expected, string Mentions) Spoil(AttendRequest r, string kind)
    {
        StatusCode expected = StatusCode.InvalidArgument;
        string mentions = "queries";
        switch (kind)
        {
            case "wrong-heads":
                r.Queries.Shape[1] = 4;
                break;
            case "wrong-dim":
                r.Queries.Shape[2] = 64;
                break;
            case "short-data":
                r.Queries.Data = ByteString.CopyFrom(r.Queries.Data.Span[..^1]);
                break;
            case "unknown-context":
                r.ContextId = "nope";
                expected = StatusCode.NotFound;
                mentions = "nope";
                break;
            case "layer-out-of-range":
                r.Layer = -1;
                mentions = "layer";
                break;
            case "nan":
            case "inf":
                float[] q = (float[])_query.Clone();
                q[5] = kind == "nan" ? float.NaN : float.PositiveInfinity;
                r.Queries = KvDb.Protocol.TensorCodec.FromSingles(q, 1, _model.NumQueryHeads, _model.HeadDim);
                mentions = "finite";
                break;
            case "empty":
                r.Queries.Shape[0] = 0;
                r.Queries.Data = ByteString.Empty;
                break;
            case "missing":
                r.Queries = null;
                break;
            case "unspecified-dtype":
                r.Queries.Dtype = DType.Unspecified;
                mentions = "DTYPE_F32";
                break;
            case "negative-exclude":
                r.Exclude = new TokenRange { Start = 10, End = 5 };
                mentions = "exclude";
                break;
            case "bad-plan":
                r.Plan = new Plan { Kind = (PlanKind)99 };
                mentions = "plan";
                break;
            case "bad-epsilon":
                r.Plan = new Plan { Kind = PlanKind.Auto, Epsilon = 2 };
                mentions = "epsilon";
                break;
        }

        return (expected, mentions);
    }

    [Fact]
    public async Task Model_errors_name_the_field()
    {
        Model bad = TestModels.Small("bad-model");
        bad.NumQueryHeads = 7;
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.CreateModelAsync(bad));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("num_query_heads", e.Status.Detail, StringComparison.Ordinal);

        Model clash = TestModels.Small("bad-input");
        clash.HeadDim = 64;
        e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.CreateModelAsync(clash));
        Assert.Equal(StatusCode.AlreadyExists, e.StatusCode);

        Model same = await _fx.Client.CreateModelAsync(TestModels.Small("bad-input"));
        Assert.Equal(_model, same);

        e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.Models.GetModelAsync(new GetModelRequest { Name = "missing" }));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.CreateContextAsync("missing"));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.CreateContextAsync(_model.Name, id: _ctx));
        Assert.Equal(StatusCode.AlreadyExists, e.StatusCode);
    }

    [Fact]
    public async Task A_second_concurrent_append_stream_fails_precondition()
    {
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> first = _fx.Client.Contexts.AppendKv();
        SyntheticWorkload w = TestModels.Workload(_model, Tokens + 1, 0);
        var ids = new int[Tokens + 1];
        w.FillTokenIds(0, ids);
        await first.RequestStream.WriteAsync(Chunk(0, ids[Tokens..], w.KeyBytes(KvDType.F32, Tokens, 1), w.ValueBytes(KvDType.F32, Tokens, 1), 1));

        // Give the server a moment to open the first transaction before the second stream arrives.
        for (int i = 0; i < 50 && (await _fx.Client.GetContextAsync(_ctx)).LayerTokens[0] == Tokens; i++)
        {
            await Task.Delay(20);
        }

        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> second = _fx.Client.Contexts.AppendKv();
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await second.RequestStream.WriteAsync(Chunk(1, ids[Tokens..], w.KeyBytes(KvDType.F32, Tokens, 1), w.ValueBytes(KvDType.F32, Tokens, 1), 1));
            await second.RequestStream.CompleteAsync();
            await second.ResponseAsync;
        });
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);

        // Abandon the first stream: the server rolls it back.
        first.Dispose();
        for (int i = 0; i < 100 && (await _fx.Client.GetContextAsync(_ctx)).LayerTokens[0] != Tokens; i++)
        {
            await Task.Delay(20);
        }

        await AssertUnchanged();
    }

    private AppendKvRequest Chunk(int layer, int[] ids, byte[] keys, byte[] values, int n)
    {
        var r = new AppendKvRequest
        {
            ContextId = _ctx,
            Layer = layer,
            Keys = KvDb.Protocol.TensorCodec.FromBytes(KvDType.F32, keys, n, _model.NumKvHeads, _model.HeadDim),
            Values = KvDb.Protocol.TensorCodec.FromBytes(KvDType.F32, values, n, _model.NumKvHeads, _model.HeadDim),
        };
        r.TokenIds.Add(ids);
        return r;
    }

    private Task<AttentionPartial> Attend() => _fx.Client.AttendAsync(_ctx, 0, _query, 1, _model.NumQueryHeads, _model.HeadDim);

    private async Task AssertUnchanged()
    {
        Context c = await _fx.Client.GetContextAsync(_ctx);
        Assert.Equal(Tokens, c.NumTokens);
        Assert.Equal([Tokens, Tokens], c.LayerTokens);
        AttentionPartial now = await Attend();
        Assert.Equal(_before.Output, now.Output);
        Assert.Equal(_before.Lse, now.Lse);
    }
}

using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>
/// Client-supplied sizes: out-of-range ones get INVALID_ARGUMENT, huge but valid ones behave like "all tokens" and never
/// size an allocation; either way stored data is untouched.
/// </summary>
public sealed class RequestLimitsTests : IClassFixture<ServerFixture>, IAsyncLifetime
{
    private const int Tokens = 300;
    private readonly ServerFixture _fx;
    private Model _model = null!;
    private string _ctx = null!;
    private float[] _query = null!;
    private AttentionPartial _before = null!;

    public RequestLimitsTests(ServerFixture fx)
    {
        _fx = fx;
    }

    public async Task InitializeAsync()
    {
        _model = await _fx.Client.CreateModelAsync(TestModels.Small("request-limits"));
        _ctx = (await _fx.Client.CreateContextAsync(_model.Name)).Id;
        await EndToEndTests.Load(_fx.Client, _model, _ctx, Tokens);
        _query = TestModels.Workload(_model, Tokens, 0).Queries(2, 3);
        _before = await _fx.Client.AttendAsync(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, plan: new Plan { Kind = PlanKind.Exact });
    }

    public Task DisposeAsync() => Task.CompletedTask;

    public static TheoryData<PlanKind> Kinds => new()
    {
        PlanKind.Auto, PlanKind.Exact, PlanKind.BlockTopK, PlanKind.CentroidTopK, PlanKind.LshTopK, PlanKind.AnnTopK, PlanKind.LshSampling, PlanKind.Dipr,
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public async Task A_budget_beyond_the_context_attends_like_one_of_the_whole_context(PlanKind kind)
    {
        await WaitForIndexes(kind);
        foreach (long budget in new[] { 1L << 40, long.MaxValue, int.MaxValue, (long)int.MaxValue + 1 })
        {
            AttentionPartial huge = await Attend(new Plan { Kind = kind, Budget = budget });
            AttentionPartial whole = await Attend(new Plan { Kind = kind, Budget = Tokens });
            Assert.Equal(whole.Output, huge.Output);
            Assert.Equal(whole.Lse, huge.Lse);
        }

        ExplainResponse e = await _fx.Client.ExplainAsync(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, plan: new Plan { Kind = kind, Budget = 1L << 40 });
        Assert.All(e.Heads, h => Assert.InRange(h.EstimatedRows, -1, Tokens));
        await AssertUnchanged();
    }

    public static TheoryData<string> BadPlans => new()
    {
        "negative-budget", "nan-beta", "infinite-beta", "negative-beta", "negative-epsilon", "epsilon-one", "nan-epsilon", "negative-delta", "delta-one", "infinite-delta", "negative-latency", "unknown-kind",
    };

    [Theory]
    [MemberData(nameof(BadPlans))]
    public async Task An_out_of_range_plan_is_invalid_on_attend_explain_and_stream(string kind)
    {
        var plan = new Plan { Kind = PlanKind.Auto };
        switch (kind)
        {
            case "negative-budget": plan.Budget = -1; break;
            case "nan-beta": plan.Beta = float.NaN; break;
            case "infinite-beta": plan.Beta = float.PositiveInfinity; break;
            case "negative-beta": plan.Beta = -1; break;
            case "negative-epsilon": plan.Epsilon = -0.1; break;
            case "epsilon-one": plan.Epsilon = 1; break;
            case "nan-epsilon": plan.Epsilon = double.NaN; break;
            case "negative-delta": plan.Delta = -0.1; break;
            case "delta-one": plan.Delta = 1; break;
            case "infinite-delta": plan.Delta = double.PositiveInfinity; break;
            case "negative-latency": plan.MaxLatencyUs = -5; break;
            case "unknown-kind": plan.Kind = (PlanKind)1234; break;
        }

        AttendRequest r = KvDbClient.BuildAttend(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, plan: plan);
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.Attention.AttendAsync(r));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.Attention.ExplainAsync(r));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        using (AsyncDuplexStreamingCall<AttendRequest, AttendResponse> stream = _fx.Client.Attention.AttendStream())
        {
            await stream.RequestStream.WriteAsync(r);
            await stream.RequestStream.CompleteAsync();
            e = await Assert.ThrowsAsync<RpcException>(async () => await stream.ResponseStream.MoveNext());
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        }

        await AssertUnchanged();
    }

    public static TheoryData<long, long> HugeExcludes => new()
    {
        { 0, long.MaxValue }, { long.MaxValue - 1, long.MaxValue }, { 1L << 40, 1L << 41 }, { 5, 1L << 40 },
    };

    [Theory]
    [MemberData(nameof(HugeExcludes))]
    public async Task An_exclude_range_past_the_context_is_clipped_to_it(long start, long end)
    {
        AttendRequest r = KvDbClient.BuildAttend(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, start, end, new Plan { Kind = PlanKind.Exact });
        try
        {
            await _fx.Client.Attention.AttendAsync(r);
        }
        catch (RpcException e)
        {
            // Excluding every token leaves nothing to attend: a documented INVALID_ARGUMENT, never INTERNAL.
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        }

        await AssertUnchanged();
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    public async Task A_negative_page_size_is_invalid(int pageSize)
    {
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await _fx.Client.ListContextsAsync(pageSize));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        ListContextsResponse huge = await _fx.Client.ListContextsAsync(int.MaxValue);
        Assert.Contains(huge.Contexts, c => c.Id == _ctx);
        await AssertUnchanged();
    }

    private Task<AttentionPartial> Attend(Plan plan) => _fx.Client.AttendAsync(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, plan: plan);

    private async Task WaitForIndexes(PlanKind kind)
    {
        for (int i = 0; i < 300; i++)
        {
            ExplainResponse e = await _fx.Client.ExplainAsync(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, plan: new Plan { Kind = kind });
            if (e.Indexes.All(s => s.State == IndexState.Ready))
            {
                return;
            }

            await Task.Delay(100);
        }
    }

    private async Task AssertUnchanged()
    {
        Context c = await _fx.Client.GetContextAsync(_ctx);
        Assert.Equal([Tokens, Tokens], c.LayerTokens);
        AttentionPartial now = await _fx.Client.AttendAsync(_ctx, 0, _query, 2, _model.NumQueryHeads, _model.HeadDim, plan: new Plan { Kind = PlanKind.Exact });
        Assert.Equal(_before.Output, now.Output);
        Assert.Equal(_before.Lse, now.Lse);
    }
}

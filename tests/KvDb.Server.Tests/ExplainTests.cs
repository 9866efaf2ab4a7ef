using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.QueryEngine.Planning;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Server.Tests;

/// <summary>A server whose cost model is the fixed default (not calibrated), so AUTO's exact-vs-sampled decisions do not depend on the machine.</summary>
public sealed class UncalibratedServerFixture : IAsyncLifetime
{
    private KvDbServerHandle? _server;

    public KvDbServerHandle Server => _server ?? throw new InvalidOperationException("server not started");

    public KvDbClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _server = await KvDbServer.StartAsync(new KvDbServerOptions { Host = "127.0.0.1", Port = 0, CpuBudgetBytes = 512L << 20, CalibrateCosts = false });
        Client = new KvDbClient(_server.Address);
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>Attention.Explain: the structured explain of a request run as Attend runs it.</summary>
public sealed class ExplainTests : IClassFixture<UncalibratedServerFixture>
{
    private const int Tokens = 8192;
    private static readonly Model Shape = new()
    {
        Name = "explain",
        NumLayers = 1,
        NumQueryHeads = 16,
        NumKvHeads = 4,
        HeadDim = 128,
        Dtype = DType.Bf16,
        BlockSize = 64,
    };

    private static readonly PlanKind[] FixedBudget = [PlanKind.BlockTopK, PlanKind.CentroidTopK, PlanKind.LshTopK, PlanKind.AnnTopK, PlanKind.LshSampling, PlanKind.Dipr];

    private readonly UncalibratedServerFixture _fx;

    public ExplainTests(UncalibratedServerFixture fx)
    {
        _fx = fx;
    }

    [Fact]
    public async Task Explain_of_an_exact_request_reports_what_attend_reports()
    {
        (string ctx, SyntheticWorkload w) = await Load();
        float[] q = w.Queries(2, 5);
        var plan = new Plan { Kind = PlanKind.Exact };
        ExplainResponse e = await _fx.Client.ExplainAsync(ctx, 0, q, 2, Shape.NumQueryHeads, Shape.HeadDim, 100, 300, plan);
        AttentionPartial attend = await _fx.Client.AttendAsync(ctx, 0, q, 2, Shape.NumQueryHeads, Shape.HeadDim, 100, 300, plan);

        Assert.Equal((PlanKind.Exact, "exact", PlanDecision.Requested), (e.Requested, e.Plan, e.Decision));
        Assert.Equal((0, (long)Tokens), (e.Layer, e.LayerTokens));
        Assert.Empty(e.Indexes);
        Assert.Equal((0.0, 0.0), (e.Epsilon, e.Delta));
        Assert.Equal(Shape.NumKvHeads, e.Heads.Count);
        long live = Tokens - 200;
        long rowBytes = Shape.HeadDim * 2;
        Assert.All(e.Heads, h =>
        {
            Assert.Equal(("exact", HeadChoice.Planned, live, 0L), (h.Plan, h.Choice, h.Attended, h.Sampled));
            Assert.Equal((live * 2, live * 2, live * 2 * rowBytes), (h.TokensScored, h.TokensAttended, h.BytesRead));
            Assert.Equal((live, live * 2 * rowBytes), (h.EstimatedRows, h.EstimatedBytes));
            Assert.Equal((1.0, 0.0), (h.MassExact, h.ErrorBound));
            Assert.Equal(h.ExactUs, h.ChosenUs);
            Assert.Empty(h.Alternatives);
        });
        AssertTotals(e);
        Assert.Equal(e.EstimatedBytes, e.ActualBytesRead);

        // The same request through Attend counts the same.
        AttendStats stats = Assert.IsType<AttendStats>(attend.Stats);
        Assert.Equal((stats.Plan, stats.TokensScored, stats.TokensAttended, stats.BytesRead), (e.Stats.Plan, e.ActualTokensScored, e.ActualTokensAttended, e.ActualBytesRead));
        Assert.Equal(stats.HeadQuality, e.Stats.HeadQuality);
    }

    [Fact]
    public async Task Explain_of_auto_is_exact_until_the_index_is_ready_then_samples_and_says_why_exact_lost()
    {
        (string ctx, SyntheticWorkload w) = await Load();
        float[] q = w.Queries(1, 11);
        var auto = new Plan { Kind = PlanKind.Auto };

        ExplainResponse before = await _fx.Client.ExplainAsync(ctx, 0, q, 1, Shape.NumQueryHeads, Shape.HeadDim, plan: auto);
        Assert.Equal((PlanKind.Auto, "exact", PlanDecision.IndexNotReady), (before.Requested, before.Plan, before.Decision));
        IndexStatus index = Assert.Single(before.Indexes);
        Assert.Equal((QueryPlanner.AutoHeavySpec, IndexState.Building), (index.Spec, index.State));
        Assert.Equal((0.05, 0.05), (before.Epsilon, before.Delta));
        Assert.All(before.Heads, h =>
        {
            Assert.Equal(("exact", HeadChoice.Planned, (long)Tokens), (h.Plan, h.Choice, h.Attended));
            Alternative sampled = Assert.Single(h.Alternatives, a => a.Kind == PlanKind.Auto);
            Assert.Equal((QueryPlanner.AutoName, LostBecause.IndexNotReady), (sampled.Plan, sampled.LostBecause));
            Assert.Equal((-1L, -1L, -1.0), (sampled.EstimatedRows, sampled.EstimatedBytes, sampled.EstimatedUs));
            AssertFixedBudgetSetAside(h);
        });
        AssertTotals(before);

        await _fx.Server.Executor.Indexes.WhenIdle(ctx, 0, QueryPlanner.AutoHeavySpec);
        ExplainResponse after = await _fx.Client.ExplainAsync(ctx, 0, q, 1, Shape.NumQueryHeads, Shape.HeadDim, plan: auto);
        Assert.Equal((QueryPlanner.AutoName, PlanDecision.AutoSampled), (after.Plan, after.Decision));
        Assert.Equal(IndexState.Ready, Assert.Single(after.Indexes).State);
        Assert.Equal(Tokens, after.Indexes[0].IndexedTokens);
        HeadExplain[] sampledHeads = [.. after.Heads.Where(h => h.Choice == HeadChoice.Sampled)];
        Assert.NotEmpty(sampledHeads);
        Assert.All(sampledHeads, h =>
        {
            Assert.Equal(QueryPlanner.AutoName, h.Plan);
            Assert.True(h.Sampled > 0 && h.Attended > 0);
            Assert.InRange(h.TokensAttended, h.Attended, h.Attended + h.Sampled);
            Assert.InRange(h.MassExact, double.Epsilon, 1);
            Assert.Equal(0.05, h.ErrorBound);
            Assert.InRange(h.MaxPredictedError, 0, 0.05 * (1 + 1e-9));
            Alternative exact = Assert.Single(h.Alternatives, a => a.Kind == PlanKind.Exact);
            Assert.Equal(("exact", LostBecause.Costlier), (exact.Plan, exact.LostBecause));
            Assert.Equal((Tokens, Tokens * 2L * Shape.HeadDim * 2), (exact.EstimatedRows, exact.EstimatedBytes));
            Assert.Equal(h.ExactUs, exact.EstimatedUs);
            Assert.True(exact.EstimatedUs > h.ChosenUs, $"exact {exact.EstimatedUs} µs against {h.ChosenUs} µs chosen");
            AssertFixedBudgetSetAside(h);
        });
        AssertTotals(after);
        Assert.True(after.ActualTokensAttended < Tokens * Shape.NumKvHeads / 4, $"attended {after.ActualTokensAttended}");

        // What the query heads rest on agrees with their KV head's explain.
        Assert.Equal(Shape.NumQueryHeads, after.Stats.HeadQuality.Count);
        foreach (HeadExplain h in sampledHeads)
        {
            HeadQuality[] group = [.. after.Stats.HeadQuality.Where(x => x.KvHead == h.KvHead)];
            Assert.Equal(Shape.NumQueryHeads / Shape.NumKvHeads, group.Length);
            Assert.All(group, x => Assert.Equal(("sampled", h.Attended, h.Sampled), (x.Plan, x.TokensExact, x.TokensSampled)));
            Assert.Equal(h.MassExact, group.Average(x => x.MassExact), 9);
        }
    }

    /// <summary>Totals: the heads add up to the actual totals, which are the stats' counters; the estimate is the heads' sum.</summary>
    private static void AssertTotals(ExplainResponse e)
    {
        Assert.Equal(e.Heads.Sum(h => h.TokensScored), e.ActualTokensScored);
        Assert.Equal(e.Heads.Sum(h => h.TokensAttended), e.ActualTokensAttended);
        Assert.Equal(e.Heads.Sum(h => h.BytesRead), e.ActualBytesRead);
        Assert.Equal(e.Heads.Sum(h => h.EstimatedRows), e.EstimatedRows);
        Assert.Equal(e.Heads.Sum(h => h.EstimatedBytes), e.EstimatedBytes);
        Assert.Equal((e.Stats.TokensScored, e.Stats.TokensAttended, e.Stats.BytesRead), (e.ActualTokensScored, e.ActualTokensAttended, e.ActualBytesRead));
        Assert.Equal(e.Plan, e.Stats.Plan);
        Assert.Equal((e.Epsilon, e.Delta), (e.Stats.Epsilon, e.Stats.Delta));
        Assert.False(string.IsNullOrEmpty(e.Stats.Explain));
        Assert.Equal("cpu", e.Site);
    }

    /// <summary>Under AUTO every fixed-budget kind is set aside once per head for want of a quality guarantee; DIPR (a scan) always has an estimate.</summary>
    private static void AssertFixedBudgetSetAside(HeadExplain h)
    {
        Alternative[] unbounded = [.. h.Alternatives.Where(a => a.LostBecause == LostBecause.NoQualityGuarantee)];
        Assert.Equal(FixedBudget, unbounded.Select(a => a.Kind));
        Alternative dipr = unbounded.Single(a => a.Kind == PlanKind.Dipr);
        Assert.True(dipr.EstimatedRows > 0 && dipr.EstimatedUs > 0);
    }

    private async Task<(string Context, SyntheticWorkload Workload)> Load()
    {
        await _fx.Client.CreateModelAsync(Shape);
        string ctx = (await _fx.Client.CreateContextAsync(Shape.Name)).Id;
        var w = new SyntheticWorkload(new SyntheticWorkloadOptions
        {
            Tokens = Tokens,
            NumKvHeads = Shape.NumKvHeads,
            NumQueryHeads = Shape.NumQueryHeads,
            HeadDim = Shape.HeadDim,
            DiffuseHeadFraction = 0,
        });
        var ids = new int[Tokens];
        w.FillTokenIds(0, ids);
        await _fx.Client.AppendLayerAsync(ctx, 0, ids, w.KeyBytes(KvDType.BF16, 0, Tokens), w.ValueBytes(KvDType.BF16, 0, Tokens), KvDType.BF16, Shape.NumKvHeads, Shape.HeadDim);
        return (ctx, w);
    }
}

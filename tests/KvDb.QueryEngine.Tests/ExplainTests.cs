using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Planning;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// The explain record as data: the alternatives the planner set aside per KV head and why, the per-head actual
/// counters (which add up to the request's), the contract, and the rendering of every decision.
/// </summary>
public sealed class ExplainTests : IDisposable
{
    private const int Tokens = 8192;
    private const int QueryHeads = 16;
    private const int KvHeads = 4;
    private const int Dim = 128;
    private const int RowBytes = Dim * 2;

    /// <summary>The kinds AUTO sets aside for want of a quality guarantee.</summary>
    private static readonly PlanKind[] FixedBudget = [PlanKind.BlockTopK, PlanKind.CentroidTopK, PlanKind.LshTopK, PlanKind.AnnTopK, PlanKind.LshSampling, PlanKind.Dipr];

    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 512L << 20 });
    private readonly ITestOutputHelper _output;

    public ExplainTests(ITestOutputHelper output)
    {
        _output = output;
        _store.CreateModel(new ModelSchema("m", 1, QueryHeads, KvHeads, Dim, KvDType.BF16, 64, 0));
    }

    public void Dispose() => _store.Dispose();

    [Fact]
    public void Exact_request_has_no_alternatives_and_its_heads_add_up_to_the_totals()
    {
        (string context, SyntheticWorkload workload) = Load("peaked");
        using var executor = new AttentionExecutor(_store, costs: CostModel.Default);
        AttentionResult r = executor.Attend(new AttentionQuery(context, 0, workload.Queries(2, 3), 2, 100, 300, new PlanRequest(PlanKind.Exact), false));
        AttentionExplain e = r.Stats.Explain;

        Assert.Equal((PlanKind.Exact, "exact", PlanDecision.Requested), (e.Requested, e.Plan, e.Decision));
        Assert.Null(e.Contract);
        Assert.Equal(KvHeads, e.Heads.Count);
        long live = Tokens - 200;
        Assert.All(e.Heads, h =>
        {
            Assert.Equal(("exact", HeadChoice.Planned, live, 0L), (h.Plan, h.Choice, h.Attended, h.Sampled));
            Assert.Empty(h.Alternatives);
            Assert.Equal(new AttentionCounters(live * 2, live * 2, live * 2 * RowBytes), h.Actual);
            Assert.Equal((1.0, 0.0), (h.MassExact, h.ErrorBound));
        });
        AssertHeadsAddUp(r);
        Assert.Equal(e.Estimated.Bytes, e.Actual.BytesRead);
        Assert.NotEmpty(ExplainText.Render(e));
    }

    [Fact]
    public async Task Auto_lists_its_sampled_plan_as_not_ready_then_samples_and_lists_exact_as_costlier()
    {
        (string context, SyntheticWorkload workload) = Load("peaked");
        using var executor = new AttentionExecutor(_store, costs: CostModel.Default);
        // As the Explain call asks: the set-aside plans are estimated too.
        var query = new AttentionQuery(context, 0, workload.Queries(1, 11), 1, 0, 0, PlanRequest.Auto, false) { Explained = true };

        AttentionResult first = executor.Attend(query);
        AttentionExplain before = first.Stats.Explain;
        Assert.Equal((PlanDecision.IndexNotReady, "exact"), (before.Decision, before.Plan));
        Assert.Equal(QualityContract.Default, before.Contract);
        Assert.All(before.Heads, h =>
        {
            Assert.Equal(("exact", HeadChoice.Planned), (h.Plan, h.Choice));
            Alternative auto = Assert.Single(h.Alternatives, a => a.Kind == PlanKind.Auto);
            Assert.Equal((QueryPlanner.AutoName, LostBecause.IndexNotReady, (PlanEstimate?)null), (auto.Plan, auto.LostBecause, auto.Estimated));
            Assert.True(double.IsNaN(auto.EstimatedMicros));
            AssertFixedBudgetSetAside(h);
        });
        AssertHeadsAddUp(first);
        Assert.NotEmpty(ExplainText.Render(before));

        await executor.Indexes.WhenIdle(context, 0, QueryPlanner.AutoHeavySpec);
        AttentionResult second = executor.Attend(query);
        AttentionExplain after = second.Stats.Explain;
        Assert.Equal((PlanDecision.AutoSampled, QueryPlanner.AutoName), (after.Decision, after.Plan));
        HeadExplain[] sampled = [.. after.Heads.Where(h => h.Choice == HeadChoice.Sampled)];
        Assert.NotEmpty(sampled);
        Assert.All(sampled, h =>
        {
            Assert.Equal(QueryPlanner.AutoName, h.Plan);
            Assert.True(h.Sampled > 0);
            Assert.InRange(h.MassExact, double.Epsilon, 1);
            Assert.Equal(QualityContract.Default.Epsilon, h.ErrorBound);
            Assert.InRange(h.MaxPredictedError, 0, QualityContract.Default.Epsilon * (1 + 1e-9));
            Alternative exact = Assert.Single(h.Alternatives, a => a.Kind == PlanKind.Exact);
            Assert.Equal(("exact", LostBecause.Costlier), (exact.Plan, exact.LostBecause));
            Assert.Equal(new PlanEstimate(Tokens, Tokens * 2L * RowBytes), exact.Estimated);
            Assert.Equal(h.ExactMicros, exact.EstimatedMicros);
            Assert.True(exact.EstimatedMicros > h.ChosenMicros, $"exact {exact.EstimatedMicros} µs against {h.ChosenMicros} µs chosen");
            Assert.InRange(h.Actual.TokensAttended, h.Attended, h.Attended + h.Sampled);
            AssertFixedBudgetSetAside(h);

            // The centroid index AUTO searches is CENTROID_TOP_K's: ready, so that kind has an estimate.
            Alternative centroid = Assert.Single(h.Alternatives, a => a.Kind == PlanKind.CentroidTopK);
            Assert.NotNull(centroid.Estimated);
            Assert.True(centroid.EstimatedMicros > 0);
        });
        AssertHeadsAddUp(second);
        _output.WriteLine(ExplainText.Render(before));
        _output.WriteLine(ExplainText.Render(after));
        Assert.NotEmpty(ExplainText.Render(after));
    }

    [Fact]
    public async Task Diffuse_heads_list_the_sample_the_contract_needed_then_their_history()
    {
        (string context, SyntheticWorkload workload) = Load("diffuse");
        using var executor = new AttentionExecutor(_store, costs: CostModel.Default);
        // A fixed heavy set (the request's budget) so the heads cannot grow out of exact attention within three queries.
        var tight = new PlanRequest(PlanKind.Auto, Budget: 64, Quality: new QualityContract(0.01, 0.01));
        executor.Attend(new AttentionQuery(context, 0, workload.Queries(1, 1), 1, 0, 0, tight, false));
        await executor.Indexes.WhenIdle(context, 0, QueryPlanner.AutoHeavySpec);

        var seen = new HashSet<HeadChoice>();
        for (int i = 0; i < 3; i++)
        {
            AttentionResult r = executor.Attend(new AttentionQuery(context, 0, workload.Queries(1, 500 + (ulong)i), 1, 0, 0, tight, false));
            Assert.Equal(PlanDecision.AutoSampled, r.Stats.Explain.Decision);
            AssertHeadsAddUp(r);
            _output.WriteLine(ExplainText.Render(r.Stats.Explain));
            foreach (HeadExplain h in r.Stats.Explain.Heads)
            {
                seen.Add(h.Choice);
                Alternative? auto = h.Alternatives.SingleOrDefault(a => a.Kind == PlanKind.Auto);
                switch (h.Choice)
                {
                    case HeadChoice.DiffuseAfterPilot:
                        Assert.Equal("exact", h.Plan);
                        Assert.Equal(LostBecause.Costlier, auto!.LostBecause);
                        Assert.True(auto.Estimated!.Value.Rows > h.Estimated.Rows, "the contract's sample is larger than the pre-pilot estimate");
                        Assert.True(auto.EstimatedMicros >= h.ExactMicros);
                        Assert.True(h.Scanned > 0, "the pilot counts as scanned");
                        break;
                    case HeadChoice.ExactBefore:
                        Assert.Equal("exact", h.Plan);
                        Assert.Equal(LostBecause.NeededExactBefore, auto!.LostBecause);
                        Assert.Equal(h.Estimated, auto.Estimated);
                        break;
                    case HeadChoice.ExactCheaper:
                        Assert.Equal(LostBecause.Costlier, auto!.LostBecause);
                        Assert.True(auto.EstimatedMicros >= h.ExactMicros);
                        break;
                    default:
                        Assert.Equal(LostBecause.Costlier, Assert.Single(h.Alternatives, a => a.Kind == PlanKind.Exact).LostBecause);
                        break;
                }
            }
        }

        Assert.Contains(HeadChoice.DiffuseAfterPilot, seen);
        Assert.Contains(HeadChoice.ExactBefore, seen);
    }

    [Fact]
    public void A_short_layer_sets_the_sampled_plan_aside_as_costlier()
    {
        const int tokens = 256;
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim, DiffuseHeadFraction = 0 });
        string context = _store.CreateContext("m", "short", null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(context, workload, KvDType.BF16, 0, tokens);
        using var executor = new AttentionExecutor(_store, costs: CostModel.Default);
        AttentionResult r = executor.Attend(new AttentionQuery(context, 0, workload.Queries(1, 2), 1, 0, 0, PlanRequest.Auto, false) { Explained = true });

        Assert.Equal(PlanDecision.AutoExactCheaper, r.Stats.Explain.Decision);
        Assert.Empty(r.Stats.Explain.Indexes);
        Assert.All(r.Stats.Explain.Heads, h =>
        {
            Alternative auto = Assert.Single(h.Alternatives, a => a.Kind == PlanKind.Auto);
            Assert.Equal(LostBecause.Costlier, auto.LostBecause);
            Assert.True(auto.EstimatedMicros >= h.ExactMicros);
            AssertFixedBudgetSetAside(h);
        });
        AssertHeadsAddUp(r);
        Assert.NotEmpty(ExplainText.Render(r.Stats.Explain));
    }

    [Fact]
    public void A_requested_sparse_kind_whose_index_is_not_ready_is_the_one_alternative()
    {
        (string context, SyntheticWorkload workload) = Load("peaked");
        using var executor = new AttentionExecutor(_store, costs: CostModel.Default);
        AttentionResult r = executor.Attend(new AttentionQuery(context, 0, workload.Queries(1, 2), 1, 0, 0, new PlanRequest(PlanKind.BlockTopK), false));

        Assert.Equal(PlanDecision.IndexNotReady, r.Stats.Explain.Decision);
        Assert.All(r.Stats.Explain.Heads, h =>
        {
            Alternative a = Assert.Single(h.Alternatives);
            Assert.Equal(("indexed:block", PlanKind.BlockTopK, LostBecause.IndexNotReady, (PlanEstimate?)null), (a.Plan, a.Kind, a.LostBecause, a.Estimated));
        });
        AssertHeadsAddUp(r);
    }

    /// <summary>Every head lists each fixed-budget kind once, set aside for want of a quality guarantee; DIPR (a scan without its index) always has an estimate.</summary>
    private static void AssertFixedBudgetSetAside(HeadExplain h)
    {
        Alternative[] unbounded = [.. h.Alternatives.Where(a => a.LostBecause == LostBecause.NoQualityGuarantee)];
        Assert.Equal(FixedBudget, unbounded.Select(a => a.Kind));
        Alternative dipr = unbounded.Single(a => a.Kind == PlanKind.Dipr);
        Assert.NotNull(dipr.Estimated);
        Assert.True(dipr.EstimatedMicros > 0);
    }

    /// <summary>The heads' actual counters add up to the request's, which are the stats'.</summary>
    private static void AssertHeadsAddUp(AttentionResult r)
    {
        AttentionExplain e = r.Stats.Explain;
        AttentionCounters sum = default;
        foreach (HeadExplain h in e.Heads)
        {
            sum += h.Actual;
        }

        Assert.Equal(e.Actual, sum);
        Assert.Equal(new AttentionCounters(r.Stats.TokensScored, r.Stats.TokensAttended, r.Stats.BytesRead), e.Actual);
    }

    private (string Context, SyntheticWorkload Workload) Load(string name)
    {
        var options = new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim };
        options = name == "diffuse" ? options with { DiffuseHeadFraction = 1.0 } : options with { DiffuseHeadFraction = 0 };
        var workload = new SyntheticWorkload(options);
        string context = _store.CreateContext("m", name, null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(context, workload, KvDType.BF16, 0, Tokens);
        return (context, workload);
    }
}

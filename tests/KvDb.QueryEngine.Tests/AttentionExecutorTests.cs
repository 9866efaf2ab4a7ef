using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.QueryEngine.Tests;

public sealed class AttentionExecutorTests : IDisposable
{
    private const int Tokens = 200;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 64L << 20 });
    private readonly ModelSchema _model;
    private readonly SyntheticWorkload _workload;
    private readonly string _ctx;

    public AttentionExecutorTests()
    {
        _model = _store.CreateModel(new ModelSchema("qe", 1, 4, 2, 16, KvDType.F32, 16, 0));
        _workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 2, NumQueryHeads = 4, HeadDim = 16, KeyRank = 4, RecentWindow = 8 });
        _ctx = _store.CreateContext("qe", "", null, []).Id;
        _store.AppendWorkload(_ctx, _workload, KvDType.F32, 0, Tokens);
    }

    [Theory]
    [InlineData(PlanKind.Auto, 0, 0)]
    [InlineData(PlanKind.Exact, 0, 0)]
    [InlineData(PlanKind.Exact, 50, 120)]
    [InlineData(PlanKind.Unspecified, 190, 500)]
    public void Exact_plan_matches_reference_and_reports_stats(PlanKind kind, long xs, long xe)
    {
        float[] q = _workload.Queries(2, 11);
        using var executor = new AttentionExecutor(_store);
        AttentionResult r = executor.Attend(new AttentionQuery(_ctx, 0, q, 2, xs, xe, new PlanRequest(kind), ReturnSelection: true));

        float[] keys = new float[Tokens * 2 * 16];
        float[] values = new float[keys.Length];
        _workload.FillKeys(0, Tokens, keys);
        _workload.FillValues(0, Tokens, values);
        (double[] o, double[] lse) = ReferenceAttention.Compute(keys, values, q, 2, 4, 2, 16, _model.SoftmaxScale, xs, xe);
        Assert.True(ReferenceAttention.RelativeL2(r.Output, o) <= 1e-5);
        Assert.True(ReferenceAttention.MaxAbsError(r.Lse, lse) <= 1e-4);

        long live = Tokens - (Math.Min(xe, Tokens) - Math.Min(xs, Tokens));
        Assert.Equal("exact", r.Stats.Plan);
        Assert.Equal(live * 2 * 2, r.Stats.TokensAttended);
        Assert.Equal(live * 2 * 2 * 16 * 4, r.Stats.BytesRead);
        Assert.Equal("exact", r.Stats.Explain.Plan);
        Assert.All(r.Stats.Explain.Heads, h => Assert.Equal(live, h.Attended));
        Assert.Equal(r.Stats.BytesRead, r.Stats.Explain.Estimated.Bytes);
        Assert.Equal([(int)live, (int)live], r.SelectionCounts!);
        Assert.Equal(live * 2, r.Selected!.Length);
        Assert.DoesNotContain(r.Selected, p => p >= xs && p < xe && xe > xs);
    }

    [Fact]
    public void Invalid_exclude_and_query_shape_are_rejected()
    {
        using var executor = new AttentionExecutor(_store);
        float[] q = _workload.Queries(1, 1);
        KvDbException e = Assert.Throws<KvDbException>(() => executor.Attend(new AttentionQuery(_ctx, 0, q, 1, 9, 3, PlanRequest.Auto, false)));
        Assert.Equal(KvDbErrorCode.InvalidArgument, e.Code);
        e = Assert.Throws<KvDbException>(() => executor.Attend(new AttentionQuery(_ctx, 0, q[..^1], 1, 0, 0, PlanRequest.Auto, false)));
        Assert.Contains("[q ≥ 1, 4, 16]", e.Message, StringComparison.Ordinal);
    }

    public void Dispose() => _store.Dispose();
}

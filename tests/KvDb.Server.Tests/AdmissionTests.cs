using System.Diagnostics;
using Google.Rpc;
using Grpc.Core;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Server.Admission;
using KvDb.Workload;

namespace KvDb.Server.Tests;

/// <summary>
/// The admission limit on a real server: over it, Attend, AttendStream and AppendKv are refused with RESOURCE_EXHAUSTED
/// and a RetryInfo hint, and nothing stored changes; a query whose deadline passes stops reading K/V.
/// </summary>
public sealed class AdmissionTests : IAsyncLifetime, IDisposable
{
    private KvDbServerHandle _server = null!;
    private KvDbClient _client = null!;
    private Model _model = null!;
    private string _ctx = null!;
    private float[] _query = null!;

    public async Task InitializeAsync()
    {
        // One slot each and no queue: a slot the test holds makes the next call over the limit, deterministically.
        _server = await KvDbServer.StartAsync(new KvDbServerOptions
        {
            Port = 0,
            HttpPort = -1,
            CpuBudgetBytes = 256L << 20,
            MaxConcurrentAttends = 1,
            MaxConcurrentAppends = 1,
            AdmissionQueueFactor = 0,
            CalibrateCosts = false,
        });
        _client = new KvDbClient(_server.Address);
        _model = await _client.CreateModelAsync(TestModels.Small("admission"));
        _ctx = (await _client.CreateContextAsync(_model.Name)).Id;
        await AppendAsync(_ctx, 64);
        _query = TestModels.Workload(_model, 64, 0).Queries(1, 3);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    public void Dispose() => _client?.Dispose();

    [Fact]
    public async Task Attend_over_the_limit_is_refused_with_a_retry_hint_and_runs_once_a_slot_frees()
    {
        AdmissionGate gate = _server.Admission.Attend;
        using (await gate.EnterAsync(CancellationToken.None))
        {
            RpcException e = await Assert.ThrowsAsync<RpcException>(() => _client.AttendAsync(_ctx, 0, _query, 1, _model.NumQueryHeads, _model.HeadDim));
            AssertRetryHint(e);
            Assert.Equal(1, gate.Rejected);
        }

        AttentionPartial answer = await _client.AttendAsync(_ctx, 0, _query, 1, _model.NumQueryHeads, _model.HeadDim);
        Assert.Equal(_model.NumQueryHeads, answer.Lse.Length);
        Assert.Equal((0, 1L), (gate.Running, gate.Rejected));
    }

    [Fact]
    public async Task An_AttendStream_message_over_the_limit_ends_the_stream_after_the_earlier_answers()
    {
        AttendRequest request = KvDbClient.BuildAttend(_ctx, 0, _query, 1, _model.NumQueryHeads, _model.HeadDim);
        using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = _client.Attention.AttendStream();
        await call.RequestStream.WriteAsync(request);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(_model.NumQueryHeads, call.ResponseStream.Current.Lse.Data.Length / sizeof(float));

        using (await _server.Admission.Attend.EnterAsync(CancellationToken.None))
        {
            await call.RequestStream.WriteAsync(request);
            RpcException e = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
            AssertRetryHint(e);
        }
    }

    [Fact]
    public async Task AppendKv_over_the_limit_is_refused_with_a_retry_hint_and_stores_nothing()
    {
        string other = (await _client.CreateContextAsync(_model.Name)).Id;
        using (await _server.Admission.Append.EnterAsync(CancellationToken.None))
        {
            RpcException e = await Assert.ThrowsAsync<RpcException>(() => AppendAsync(other, 32));
            AssertRetryHint(e);
        }

        // Layer 0 only is appended: LayerTokens[0] is what changes (NumTokens counts tokens in every layer).
        Context unchanged = await _client.GetContextAsync(other);
        Assert.Equal(0, unchanged.LayerTokens[0]);
        Assert.Equal(64, (await _client.GetContextAsync(_ctx)).LayerTokens[0]);

        await AppendAsync(other, 32);
        Assert.Equal(32, (await _client.GetContextAsync(other)).LayerTokens[0]);
        Assert.Equal((0, 1L), (_server.Admission.Append.Running, _server.Admission.Append.Rejected));
    }

    [Fact]
    public async Task A_query_whose_deadline_passes_stops_reading_and_frees_its_slot()
    {
        // Long enough to measure: 16K f32 tokens and 256 query tokens make exact attention take a large fraction of a second.
        Model big = await _client.CreateModelAsync(new Model { Name = "admission-big", NumLayers = 1, NumQueryHeads = 8, NumKvHeads = 2, HeadDim = 128, Dtype = DType.F32, BlockSize = 16 });
        string ctx = (await _client.CreateContextAsync(big.Name)).Id;
        const int tokens = 16 * 1024;
        SyntheticWorkload w = TestModels.Workload(big, tokens, 0);
        var ids = new int[tokens];
        w.FillTokenIds(0, ids);
        await _client.AppendLayerAsync(ctx, 0, ids, w.KeyBytes(KvDType.F32, 0, tokens), w.ValueBytes(KvDType.F32, 0, tokens), KvDType.F32, big.NumKvHeads, big.HeadDim);
        const int q = 256;
        float[] queries = w.Queries(q, 5);
        var exact = new Plan { Kind = PlanKind.Exact };

        TimeSpan full = TimeSpan.MaxValue;
        for (int i = 0; i < 2; i++)
        {
            var sw = Stopwatch.StartNew();
            await _client.AttendAsync(ctx, 0, queries, q, big.NumQueryHeads, big.HeadDim, plan: exact);
            full = sw.Elapsed < full ? sw.Elapsed : full;
        }

        Assert.True(full > TimeSpan.FromMilliseconds(100), $"the full query took {full.TotalMilliseconds} ms: too short to show an early stop");
        long skippedBefore = ExactAttentionKernel.SkippedChunks;
        AttendRequest request = KvDbClient.BuildAttend(ctx, 0, queries, q, big.NumQueryHeads, big.HeadDim, plan: exact);
        var started = Stopwatch.StartNew();
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await _client.Attention.AttendAsync(request, deadline: DateTime.UtcNow + (full / 5)));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);

        // The slot frees when the server's work ends: well before a full query's time would have passed.
        for (int i = 0; i < 400 && _server.Admission.Attend.Running > 0; i++)
        {
            await Task.Delay(5);
        }

        TimeSpan stopped = started.Elapsed;
        Assert.Equal(0, _server.Admission.Attend.Running);
        // The skipped chunks below prove the reading stopped early; the time bound only catches a query that ran on (a
        // shared 2-core machine has taken 0.8 s to give the slot back after a 0.28 s query's deadline of 55 ms).
        Assert.True(stopped < full * 4, $"the server stopped after {stopped.TotalMilliseconds} ms; a full query takes {full.TotalMilliseconds} ms");
        Assert.True(ExactAttentionKernel.SkippedChunks > skippedBefore, "no chunk of the cancelled query was skipped");
    }

    private static void AssertRetryHint(RpcException e)
    {
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        RetryInfo hint = Assert.IsType<RetryInfo>(e.GetRpcStatus()!.GetDetail<RetryInfo>());
        TimeSpan delay = hint.RetryDelay.ToTimeSpan();
        Assert.InRange(delay, TimeSpan.FromMilliseconds(5), TimeSpan.FromSeconds(5));
    }

    private async Task AppendAsync(string ctx, int tokens)
    {
        SyntheticWorkload w = TestModels.Workload(_model, tokens, 0);
        var ids = new int[tokens];
        w.FillTokenIds(0, ids);
        await _client.AppendLayerAsync(ctx, 0, ids, w.KeyBytes(KvDType.F32, 0, tokens), w.ValueBytes(KvDType.F32, 0, tokens), KvDType.F32, _model.NumKvHeads, _model.HeadDim);
    }
}

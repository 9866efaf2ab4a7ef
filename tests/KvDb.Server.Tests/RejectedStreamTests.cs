using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Server.Tests;

/// <summary>
/// Streams the server rejects while the client is still sending: each must end with its own status (never HTTP/2
/// ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED, never a dropped connection → UNAVAILABLE), however many come in a burst on
/// one connection; and a client that keeps sending after its stream was rejected cannot hold the server reading.
/// </summary>
public sealed class RejectedStreamTests : IClassFixture<ServerFixture>, IAsyncLifetime
{
    /// <summary>Enough rejected streams in a burst to pass Kestrel's 200 streams a connection may hold in its drain queue.</summary>
    private const int Burst = 600;

    private readonly ServerFixture _fx;
    private Model _model = null!;
    private string _ctx = null!;
    private AppendKvRequest _chunk = null!;

    public RejectedStreamTests(ServerFixture fx)
    {
        _fx = fx;
    }

    public async Task InitializeAsync()
    {
        _model = await _fx.Client.CreateModelAsync(TestModels.Small("rejected-streams"));
        _ctx = (await _fx.Client.CreateContextAsync(_model.Name)).Id;
        SyntheticWorkload w = TestModels.Workload(_model, 4, 0);
        var ids = new int[4];
        w.FillTokenIds(0, ids);
        _chunk = new AppendKvRequest
        {
            ContextId = _ctx,
            Layer = 0,
            Keys = KvDb.Protocol.TensorCodec.FromBytes(KvDType.F32, w.KeyBytes(KvDType.F32, 0, 4), 4, _model.NumKvHeads, _model.HeadDim),
            Values = KvDb.Protocol.TensorCodec.FromBytes(KvDType.F32, w.ValueBytes(KvDType.F32, 0, 4), 4, _model.NumKvHeads, _model.HeadDim),
        };
        _chunk.TokenIds.Add(ids);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    /// <summary>One HTTP/2 connection, as an engine's channel has: the drain queue Kestrel keeps is per connection.</summary>
    private GrpcChannel OneConnection() => GrpcChannel.ForAddress(_fx.Server.Address, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = false },
    });

    [Theory]
    [InlineData("unknown-context", StatusCode.NotFound)]
    [InlineData("bad-layer", StatusCode.InvalidArgument)]
    public async Task A_burst_of_rejected_appends_on_one_connection_each_get_their_status(string kind, StatusCode expected)
    {
        using GrpcChannel channel = OneConnection();
        var contexts = new Contexts.ContextsClient(channel);
        AppendKvRequest first = _chunk.Clone();
        if (kind == "unknown-context")
        {
            first.ContextId = "no-such-context";
        }
        else
        {
            first.Layer = _model.NumLayers + 3;
        }

        var counts = new Dictionary<StatusCode, int>();
        for (int i = 0; i < Burst; i++)
        {
            StatusCode got = await RejectedAppend(contexts, first);
            counts[got] = counts.GetValueOrDefault(got) + 1;
        }

        string summary = string.Join(", ", counts.Select(kv => $"{kv.Key}: {kv.Value}"));
        Assert.True(counts.GetValueOrDefault(expected) == Burst, $"{Burst} rejected appends on one connection, expected {expected} for all; got {summary}");

        // The connection is still good for work.
        Context c = await contexts.GetContextAsync(new GetContextRequest { Id = _ctx });
        Assert.Equal(0, c.NumTokens);
    }

    [Fact]
    public async Task A_client_that_keeps_sending_after_a_rejection_cannot_hold_the_server_reading()
    {
        using GrpcChannel channel = OneConnection();
        var contexts = new Contexts.ContextsClient(channel);
        AppendKvRequest first = _chunk.Clone();
        first.ContextId = "no-such-context";

        // 1 MiB messages, sent until the server stops the stream: without a bound the drain would read forever.
        AppendKvRequest big = first.Clone();
        big.SampleQueries = KvDb.Protocol.TensorCodec.FromSingles(new float[(1 << 18) - 64], ((1 << 18) - 64) / (_model.NumQueryHeads * _model.HeadDim), _model.NumQueryHeads, _model.HeadDim);
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = contexts.AppendKv();
        var clock = Stopwatch.StartNew();
        long sent = 0;
        Task writer = Task.Run(async () =>
        {
            try
            {
                await call.RequestStream.WriteAsync(first);
                while (clock.Elapsed < TimeSpan.FromSeconds(60))
                {
                    await call.RequestStream.WriteAsync(big);
                    sent++;
                }
            }
            catch (Exception write) when (write is RpcException or InvalidOperationException or HttpProtocolException or IOException or OperationCanceledException)
            {
                // The server ended the stream.
            }
        });

        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseAsync);
        TimeSpan answered = clock.Elapsed;
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        await writer.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(answered < TimeSpan.FromSeconds(10), $"status after {answered.TotalSeconds:F1} s ({sent} MiB sent)");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"client still writing after {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public async Task A_client_that_waits_for_the_answer_before_half_closing_gets_it_promptly()
    {
        using GrpcChannel channel = OneConnection();
        var contexts = new Contexts.ContextsClient(channel);
        AppendKvRequest first = _chunk.Clone();
        first.Layer = -1;
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = contexts.AppendKv();
        await call.RequestStream.WriteAsync(first);
        var clock = Stopwatch.StartNew();
        RpcException e = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"status after {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// An append the server rejects at its first message, the client still sending: it writes the first message,
    /// gives the server time to reject it, writes more, then half-closes. Returns the call's status.
    /// </summary>
    private async Task<StatusCode> RejectedAppend(Contexts.ContextsClient contexts, AppendKvRequest first)
    {
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = contexts.AppendKv();
        try
        {
            await call.RequestStream.WriteAsync(first);
            await Task.WhenAny(call.ResponseAsync, Task.Delay(2));
            for (int j = 0; j < 3; j++)
            {
                await call.RequestStream.WriteAsync(first);
            }

            await call.RequestStream.CompleteAsync();
        }
        catch (Exception write) when (write is RpcException or InvalidOperationException or HttpProtocolException or IOException)
        {
            // The server ended the call (or reset the stream) while the client was writing; the call's status is in ResponseAsync.
        }

        try
        {
            await call.ResponseAsync;
            return StatusCode.OK;
        }
        catch (RpcException e)
        {
            return e.StatusCode;
        }
    }
}

using System.Diagnostics;
using Google.Rpc;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol;
using KvDb.Protocol.V1;

namespace KvDb.Load;

/// <summary>
/// One simulated inference engine: creates a context, appends its prompt, then decodes (per step one token appended to
/// every layer and one layer queried, by unary Attend or on an AttendStream, with EXACT, AUTO or a sparse plan); some
/// engines look a shared prompt up and fork contexts, some delete theirs and start again. RESOURCE_EXHAUSTED is
/// honoured: the engine waits the server's RetryInfo delay and retries.
/// </summary>
public sealed class Engine
{
    /// <summary>The model every engine uses: 2 layers, GQA 8/2, d = 128, bf16.</summary>
    public static Model Model { get; } = new() { Name = "load", NumLayers = 2, NumQueryHeads = 8, NumKvHeads = 2, HeadDim = 128, Dtype = DType.Bf16, BlockSize = 16 };

    /// <summary>Retries of one call refused with RESOURCE_EXHAUSTED before the engine gives the context up.</summary>
    private const int MaxRetries = 100;

    private static readonly PlanKind[] Plans = [PlanKind.Exact, PlanKind.Auto, PlanKind.Auto, PlanKind.BlockTopK, PlanKind.Exact, PlanKind.CentroidTopK];

    private readonly int _index;
    private readonly KvDbClient _client;
    private readonly LoadOptions _options;
    private readonly LoadStats _stats;
    private readonly Random _random;
    private readonly byte[] _prefixKeys;
    private readonly byte[] _prefixValues;
    private readonly int[] _prefixIds;
    private readonly float[] _query;
    private readonly int _rowBytes = Model.NumKvHeads * Model.HeadDim * 2;

    /// <summary>Creates engine <paramref name="index"/>; its prompt K/V are <paramref name="prefixKeys"/>/<paramref name="prefixValues"/> (shared, read only).</summary>
    public Engine(int index, KvDbClient client, LoadOptions options, LoadStats stats, byte[] prefixKeys, byte[] prefixValues)
    {
        _index = index;
        _client = client;
        _options = options;
        _stats = stats;
        _random = new Random(index);
        _prefixKeys = prefixKeys;
        _prefixValues = prefixValues;
        _prefixIds = new int[options.PrefixTokens];
        _query = new float[Model.NumQueryHeads * Model.HeadDim];
        for (int i = 0; i < _query.Length; i++)
        {
            _query[i] = (float)((_random.NextDouble() * 2) - 1);
        }
    }

    /// <summary>This engine's latencies.</summary>
    public LatencyLog Latencies { get; } = new();

    /// <summary>Engines whose index is a multiple of 4 share one prompt (token ids 1..n): they dedupe and are looked up.</summary>
    private bool SharesPrompt => _index % 4 == 0;

    /// <summary>Runs contexts one after another until <paramref name="stop"/>.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        for (int round = 0; round < 1_000_000 && !stop.IsCancellationRequested; round++)
        {
            try
            {
                await OneContextAsync(round, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task OneContextAsync(int round, CancellationToken stop)
    {
        string id = $"e{_index}-r{round}";
        for (int t = 0; t < _prefixIds.Length; t++)
        {
            _prefixIds[t] = SharesPrompt ? t + 1 : (_index * 1_000_000) + (round * 10_000) + t + 1;
        }

        if (!await CallAsync(CallKind.Create, o => _client.Contexts.CreateContextAsync(new CreateContextRequest { Model = Model.Name, Namespace = "load", Id = id }, o).ResponseAsync, stop).ConfigureAwait(false))
        {
            return;
        }

        bool ok = await AppendAsync(CallKind.AppendPrefix, id, _prefixIds, 0, stop).ConfigureAwait(false);
        string? fork = null;
        if (ok && _index % 4 == 1)
        {
            // Routers ask which prefix is stored before they send a request; engines fork a context to branch a conversation.
            var lookup = new LookupPrefixRequest { Model = Model.Name, Namespace = "load" };
            lookup.TokenIds.Add(_prefixIds.AsSpan(0, Math.Min(256, _prefixIds.Length)).ToArray());
            await CallAsync(CallKind.Lookup, o => _client.Contexts.LookupPrefixAsync(lookup, o).ResponseAsync, stop).ConfigureAwait(false);
            fork = id + "-fork";
            if (!await CallAsync(CallKind.Fork, o => _client.Contexts.ForkContextAsync(new ForkContextRequest { Id = id, NewId = fork }, o).ResponseAsync, stop).ConfigureAwait(false))
            {
                fork = null;
            }
        }

        AsyncDuplexStreamingCall<AttendRequest, AttendResponse>? stream = null;
        try
        {
            var token = new int[1];
            for (int step = 0; ok && step < _options.DecodeSteps && !stop.IsCancellationRequested; step++)
            {
                token[0] = _prefixIds[^1] + 1 + step + (_index << 20);
                ok = await AppendAsync(CallKind.AppendToken, id, token, step % _options.PrefixTokens, stop).ConfigureAwait(false);
                if (!ok)
                {
                    break;
                }

                var plan = new Plan { Kind = Plans[(_index + step) % Plans.Length] };
                AttendRequest request = KvDbClient.BuildAttend(id, step % Model.NumLayers, _query, 1, Model.NumQueryHeads, Model.HeadDim, plan: plan);
                if (_index % 2 == 0)
                {
                    (ok, stream) = await StreamAttendAsync(stream, request, stop).ConfigureAwait(false);
                }
                else
                {
                    ok = await CallAsync(CallKind.Attend, o => _client.Attention.AttendAsync(request, o).ResponseAsync, stop).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            if (stream is not null)
            {
                await CloseAsync(stream).ConfigureAwait(false);
            }
        }

        // Two engines in three delete their context and start over; the rest keep theirs, so the store fills past the CPU budget.
        if (_index % 3 != 2 || fork is not null)
        {
            await CallAsync(CallKind.Delete, o => _client.Contexts.DeleteContextAsync(new DeleteContextRequest { Id = fork ?? id }, o).ResponseAsync, stop).ConfigureAwait(false);
        }

        if (_index % 3 != 2 && fork is not null)
        {
            await CallAsync(CallKind.Delete, o => _client.Contexts.DeleteContextAsync(new DeleteContextRequest { Id = id }, o).ResponseAsync, stop).ConfigureAwait(false);
        }
    }

    /// <summary>One AppendKv stream of every layer's rows for <paramref name="ids"/> (K/V taken from the prompt's rows from <paramref name="row"/>).</summary>
    private Task<bool> AppendAsync(CallKind kind, string id, int[] ids, int row, CancellationToken stop) =>
        CallAsync(kind, async o =>
        {
            using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = _client.Contexts.AppendKv(o);
            try
            {
                for (int layer = 0; layer < Model.NumLayers; layer++)
                {
                    var message = new AppendKvRequest
                    {
                        ContextId = id,
                        Layer = layer,
                        Keys = TensorCodec.FromBytes(KvDType.BF16, _prefixKeys.AsSpan(row * _rowBytes, ids.Length * _rowBytes), ids.Length, Model.NumKvHeads, Model.HeadDim),
                        Values = TensorCodec.FromBytes(KvDType.BF16, _prefixValues.AsSpan(row * _rowBytes, ids.Length * _rowBytes), ids.Length, Model.NumKvHeads, Model.HeadDim),
                    };
                    message.TokenIds.Add(ids);
                    await call.RequestStream.WriteAsync(message, o.CancellationToken).ConfigureAwait(false);
                }

                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            }
            catch (InvalidOperationException)
            {
                // The server ended the call while we were sending (a refusal): its status is the response's.
            }
            catch (RpcException)
            {
                // As above: the status comes from the response.
            }

            AppendKvResponse response = await call.ResponseAsync.ConfigureAwait(false);
            _stats.Appended(ids.Length);
            return response;
        }, stop);

    /// <summary>One request/response on the engine's AttendStream (opened on first use, reopened after a refusal).</summary>
    private async Task<(bool Ok, AsyncDuplexStreamingCall<AttendRequest, AttendResponse>? Stream)> StreamAttendAsync(AsyncDuplexStreamingCall<AttendRequest, AttendResponse>? stream, AttendRequest request, CancellationToken stop)
    {
        for (int attempt = 0; attempt < MaxRetries && !stop.IsCancellationRequested; attempt++)
        {
            stream ??= _client.Attention.AttendStream(deadline: DateTime.UtcNow.AddMinutes(10), cancellationToken: stop);
            long started = Stopwatch.GetTimestamp();
            using var step = CancellationTokenSource.CreateLinkedTokenSource(stop);
            step.CancelAfter(_options.CallDeadline);
            try
            {
                await stream.RequestStream.WriteAsync(request, step.Token).ConfigureAwait(false);
                if (!await stream.ResponseStream.MoveNext(step.Token).ConfigureAwait(false))
                {
                    throw new RpcException(new Grpc.Core.Status(StatusCode.Unknown, "the stream ended without an answer"));
                }

                Latencies.Add(CallKind.AttendStream, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                _stats.Answer(StatusCode.OK);
                return (true, stream);
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException or InvalidOperationException)
            {
                stream.Dispose();
                stream = null;
                if (stop.IsCancellationRequested)
                {
                    return (false, null);
                }

                StatusCode code = e switch
                {
                    RpcException r => r.StatusCode,
                    OperationCanceledException => StatusCode.DeadlineExceeded,
                    _ => StatusCode.Unknown,
                };
                _stats.Answer(code, e.Message);
                if (code != StatusCode.ResourceExhausted)
                {
                    return (false, null);
                }

                await BackOffAsync((RpcException)e, stop).ConfigureAwait(false);
            }
        }

        return (false, stream);
    }

    private static async Task CloseAsync(AsyncDuplexStreamingCall<AttendRequest, AttendResponse> stream)
    {
        try
        {
            await stream.RequestStream.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or OperationCanceledException)
        {
            // Already ended by the server or by the run's stop.
        }

        stream.Dispose();
    }

    /// <summary>
    /// Makes one call with the run's deadline, timing it; on RESOURCE_EXHAUSTED waits the hinted delay and tries again
    /// (at most <see cref="MaxRetries"/> times). False when the call failed otherwise or the run stopped.
    /// </summary>
    private async Task<bool> CallAsync<T>(CallKind kind, Func<CallOptions, Task<T>> call, CancellationToken stop)
    {
        for (int attempt = 0; attempt < MaxRetries && !stop.IsCancellationRequested; attempt++)
        {
            long started = Stopwatch.GetTimestamp();
            try
            {
                await call(new CallOptions(deadline: DateTime.UtcNow + _options.CallDeadline, cancellationToken: stop)).ConfigureAwait(false);
                Latencies.Add(kind, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                _stats.Answer(StatusCode.OK);
                return true;
            }
            catch (RpcException e) when (!stop.IsCancellationRequested)
            {
                _stats.Answer(e.StatusCode, e.Status.Detail);
                if (e.StatusCode != StatusCode.ResourceExhausted)
                {
                    return false;
                }

                await BackOffAsync(e, stop).ConfigureAwait(false);
            }
            catch (RpcException) when (stop.IsCancellationRequested)
            {
                return false;
            }
        }

        return false;
    }

    /// <summary>Waits the server's hint (RetryInfo.retry_delay; 50 ms without one), with ±50% jitter so refused engines do not return together.</summary>
    private async Task BackOffAsync(RpcException e, CancellationToken stop)
    {
        TimeSpan hint = e.GetRpcStatus()?.GetDetail<RetryInfo>()?.RetryDelay?.ToTimeSpan() ?? TimeSpan.FromMilliseconds(50);
        TimeSpan wait = hint * (0.5 + _random.NextDouble());
        await Task.Delay(wait, stop).ConfigureAwait(false);
    }
}

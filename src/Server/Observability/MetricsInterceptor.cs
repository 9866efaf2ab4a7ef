using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace KvDb.Server.Observability;

/// <summary>Counts and times every gRPC call by method and status code (outermost: refused calls count too).</summary>
public sealed class MetricsInterceptor : Interceptor
{
    private readonly KvDbMetrics _metrics;
    private readonly RecentCalls _recent;
    private readonly ILogger _log;
    private readonly TimeSpan _slow;

    /// <summary>Creates the interceptor.</summary>
    public MetricsInterceptor(KvDbMetrics metrics, RecentCalls recent, ILogger<MetricsInterceptor> log, CallLogOptions options)
    {
        _metrics = metrics;
        _recent = recent;
        _log = log;
        _slow = options.SlowCall;
    }

    /// <inheritdoc />
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            TResponse response = await continuation(request, context).ConfigureAwait(false);
            Count(context, started, null, response as KvDb.Protocol.V1.AttendResponse);
            return response;
        }
        catch (Exception e)
        {
            Count(context, started, e);
            throw;
        }
    }

    /// <inheritdoc />
    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            TResponse response = await continuation(requestStream, context).ConfigureAwait(false);
            Count(context, started, null);
            return response;
        }
        catch (Exception e)
        {
            Count(context, started, e);
            throw;
        }
    }

    /// <inheritdoc />
    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
            Count(context, started, null);
        }
        catch (Exception e)
        {
            Count(context, started, e);
            throw;
        }
    }

    /// <inheritdoc />
    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
            Count(context, started, null);
        }
        catch (Exception e)
        {
            Count(context, started, e);
            throw;
        }
    }

    private void Count(ServerCallContext context, long started, Exception? failure, KvDb.Protocol.V1.AttendResponse? attend = null)
    {
        // Errors reach this interceptor as RpcException (the inner ones map them); anything else would be Unknown.
        string code = failure is null ? nameof(StatusCode.OK) : failure is RpcException r ? r.StatusCode.ToString() : nameof(StatusCode.Unknown);
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        string method = context.Method ?? "unknown";
        _metrics.Call(method, code, seconds);
        string plan = string.Empty;
        double mass = 0;
        long attended = 0;
        string detail = failure is RpcException rpc ? rpc.Status.Detail : failure?.GetType().Name ?? string.Empty;
        if (attend?.Stats is { } stats)
        {
            plan = stats.Plan;
            attended = stats.TokensAttended;
            mass = MeanMass(stats);
            detail = stats.Explain.Length > 400 ? stats.Explain[..400] + "…" : stats.Explain;
        }

        _recent.Add(new RecentCall(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), method, code, seconds * 1e6, plan, mass, attended, detail));
        Log(context, method, code, seconds, plan, detail);
    }

    /// <summary>One entry per call at Debug; slow calls, quota refusals and server faults as warnings (structured fields, so JSON logs keep them apart).</summary>
    private void Log(ServerCallContext context, string method, string code, double seconds, string plan, string detail)
    {
        bool slow = seconds >= _slow.TotalSeconds;
        bool warn = slow || code is nameof(StatusCode.ResourceExhausted) or nameof(StatusCode.Internal) or nameof(StatusCode.Unknown) or nameof(StatusCode.DataLoss);
        LogLevel level = warn ? LogLevel.Warning : LogLevel.Debug;
        if (!_log.IsEnabled(level))
        {
            return;
        }

        string requestId = context.GetHttpContext().TraceIdentifier;
        string reason = slow ? "slow call" : code == "OK" ? "call" : "call failed";
        _log.Log(
            level,
            "{Reason} {RequestId} {Method} {Status} {LatencyMs:F3} ms {Plan} {Peer} {Detail}",
            reason,
            requestId,
            method,
            code,
            seconds * 1e3,
            plan,
            context.Peer,
            code == "OK" ? string.Empty : detail);
    }

    /// <summary>The mean estimated mass of the exact part over the response's (query, head) pairs; 1 when it reports none.</summary>
    private static double MeanMass(KvDb.Protocol.V1.AttendStats stats)
    {
        if (stats.HeadQuality.Count == 0)
        {
            return 1;
        }

        double sum = 0;
        foreach (KvDb.Protocol.V1.HeadQuality h in stats.HeadQuality)
        {
            sum += h.MassExact;
        }

        return sum / stats.HeadQuality.Count;
    }
}

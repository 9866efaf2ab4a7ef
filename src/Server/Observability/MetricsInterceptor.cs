using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace KvDb.Server.Observability;

/// <summary>Counts and times every gRPC call by method and status code (outermost: refused calls count too).</summary>
public sealed class MetricsInterceptor : Interceptor
{
    private readonly KvDbMetrics _metrics;

    /// <summary>Creates the interceptor.</summary>
    public MetricsInterceptor(KvDbMetrics metrics)
    {
        _metrics = metrics;
    }

    /// <inheritdoc />
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            TResponse response = await continuation(request, context).ConfigureAwait(false);
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

    private void Count(ServerCallContext context, long started, Exception? failure)
    {
        // Errors reach this interceptor as RpcException (the inner ones map them); anything else would be Unknown.
        string code = failure is null ? nameof(StatusCode.OK) : failure is RpcException r ? r.StatusCode.ToString() : nameof(StatusCode.Unknown);
        _metrics.Call(context.Method ?? "unknown", code, Stopwatch.GetElapsedTime(started).TotalSeconds);
    }
}

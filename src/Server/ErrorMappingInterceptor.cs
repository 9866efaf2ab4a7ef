using Grpc.Core;
using Grpc.Core.Interceptors;
using KvDb.Protocol;
using KvDb.Store;

namespace KvDb.Server;

/// <summary>The one place where domain errors become gRPC status codes, for every kind of call.</summary>
public sealed class ErrorMappingInterceptor : Interceptor
{
    /// <summary>Maps an exception to the status a client should see.</summary>
    public static RpcException Map(Exception e) => e switch
    {
        RpcException rpc => rpc,
        KvDbException k => new RpcException(new Status(Code(k.Code), k.Message)),
        TensorFormatException t => new RpcException(new Status(StatusCode.InvalidArgument, t.Message)),
        Kernels.DeadlineExceededException => new RpcException(new Status(StatusCode.DeadlineExceeded, "the call's deadline passed before the server finished; send a later deadline or a cheaper request")),
        OperationCanceledException => new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled")),
        Google.Protobuf.InvalidProtocolBufferException p => new RpcException(new Status(StatusCode.InvalidArgument, "the request is not a valid protobuf message: " + p.Message)),

        // Safety net: a client-supplied number the edge failed to check must not surface as INTERNAL. Sizes reach
        // allocations (OutOfMemoryException), ranges reach argument checks and arithmetic.
        OutOfMemoryException => new RpcException(new Status(StatusCode.ResourceExhausted, "the request needs more memory than the server can give it; ask for fewer tokens, queries or a smaller budget")),
        ArgumentException a => new RpcException(new Status(StatusCode.InvalidArgument, "a request field is out of range: " + a.Message)),
        OverflowException o => new RpcException(new Status(StatusCode.InvalidArgument, "a request number is too large: " + o.Message)),
        _ => new RpcException(new Status(StatusCode.Internal, "internal error: " + e.GetType().Name + ": " + e.Message)),
    };

    /// <inheritdoc />
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            throw Map(e);
        }
    }

    /// <inheritdoc />
    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(requestStream, context).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw await EndStream(e, context).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RpcException)
        {
            // Writing to a client that already went away fails (InvalidOperationException "the request is complete"):
            // the client's cancellation, not a server fault (the request fuzzer saw WatchEvents logged as INTERNAL).
            throw context.CancellationToken.IsCancellationRequested ? new RpcException(new Status(StatusCode.Cancelled, "the client cancelled the call")) : Map(e);
        }
    }

    /// <inheritdoc />
    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw await EndStream(e, context).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// True when the call was aborted by its client. Kestrel fails the pending read at once but cancels the call's token
    /// from the thread pool a moment later, so a failed read waits for it (at most 200 ms, on this failure path only).
    /// </summary>
    private static async Task<bool> ClientWentAwayAsync(ServerCallContext context)
    {
        try
        {
            await Task.Delay(TimeSpan.FromMilliseconds(200), context.CancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        return context.CancellationToken.IsCancellationRequested;
    }

    /// <summary>
    /// The status a failed call with a request stream ends with, once what the client is still sending has been drained
    /// (bounded, see <see cref="RequestDrain"/>): the call then ends with its status and no HTTP/2 reset, so a burst of
    /// rejected streams cannot fill Kestrel's drain queue and get the client's next calls refused with ENHANCE_YOUR_CALM.
    /// </summary>
    private static async Task<RpcException> EndStream(Exception e, ServerCallContext context)
    {
        // A client that resets its stream makes the next read throw IOException: the client's doing, not a server fault.
        RpcException status = e is IOException && await ClientWentAwayAsync(context).ConfigureAwait(false)
            ? new RpcException(new Status(StatusCode.Cancelled, "the client reset the call"))
            : Map(e);
        if (status.StatusCode != StatusCode.Cancelled && status.StatusCode != StatusCode.DeadlineExceeded)
        {
            await RequestDrain.DrainAsync(context).ConfigureAwait(false);
        }

        return status;
    }

    private static StatusCode Code(KvDbErrorCode code) => code switch
    {
        KvDbErrorCode.InvalidArgument => StatusCode.InvalidArgument,
        KvDbErrorCode.NotFound => StatusCode.NotFound,
        KvDbErrorCode.AlreadyExists => StatusCode.AlreadyExists,
        KvDbErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        KvDbErrorCode.ResourceExhausted => StatusCode.ResourceExhausted,
        KvDbErrorCode.DataLoss => StatusCode.DataLoss,
        KvDbErrorCode.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };
}

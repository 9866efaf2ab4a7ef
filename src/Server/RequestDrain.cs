using System.Diagnostics;
using System.IO.Pipelines;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace KvDb.Server;

/// <summary>
/// Reads and discards what a client is still sending on a streaming call that failed, within bounds, so the call can end
/// with its status and no HTTP/2 stream reset.
/// </summary>
/// <remarks>
/// <para>
/// A handler that returns before its request stream ended makes Kestrel send the status and then RST_STREAM(NO_ERROR) to
/// stop the client sending. Kestrel keeps every stream it reset in a per-connection drain queue until the client ends or
/// resets it, or for 5 seconds; while more than 200 streams (twice MaxStreamsPerConnection) are queued, each new stream is
/// refused with RST_STREAM(ENHANCE_YOUR_CALM), which clients report as RESOURCE_EXHAUSTED, and after 100 such refusals in
/// 5 seconds Kestrel drops the connection (UNAVAILABLE). A burst of rejected appends on one channel did exactly that.
/// Reading the request to its end before returning lets the stream end normally: nothing is reset, nothing queued.
/// </para>
/// <para>
/// The drain is bounded so a client cannot hold the server reading: at most <see cref="MaxBytes"/> bytes, at most
/// <see cref="MaxTime"/> in all, and it stops when nothing arrives for <see cref="IdleTime"/> (a client waiting for the
/// answer before it half-closes). Past a bound the call ends as before, with its status and a reset; the idle bound keeps
/// such resets under 5 s / <see cref="IdleTime"/> per 5 s for a client that calls one at a time, below Kestrel's 200.
/// </para>
/// </remarks>
internal static class RequestDrain
{
    /// <summary>Most bytes of request body read and discarded after a failure.</summary>
    public const long MaxBytes = 64L << 20;

    /// <summary>Most time spent draining one call.</summary>
    public static readonly TimeSpan MaxTime = TimeSpan.FromSeconds(2);

    /// <summary>The drain stops when nothing arrives for this long.</summary>
    public static readonly TimeSpan IdleTime = TimeSpan.FromMilliseconds(50);

    /// <summary>How a drain ended.</summary>
    public enum Outcome
    {
        /// <summary>The client ended its request stream: the call ends without a reset.</summary>
        Ended,

        /// <summary>No HTTP request behind the call (in-process tests), or the call was already cancelled.</summary>
        NotApplicable,

        /// <summary>A bound was reached, or the body could not be read: the call ends with a reset, as without a drain.</summary>
        GaveUp,
    }

    /// <summary>Drains the request body of <paramref name="context"/>'s call within the bounds; never throws.</summary>
    public static async Task<Outcome> DrainAsync(ServerCallContext context)
    {
        if (context.CancellationToken.IsCancellationRequested)
        {
            return Outcome.NotApplicable;
        }

        HttpContext http;
        try
        {
            http = context.GetHttpContext();
        }
        catch (InvalidOperationException)
        {
            return Outcome.NotApplicable;
        }

        PipeReader body = http.Request.BodyReader;
        long read = 0;
        long started = Stopwatch.GetTimestamp();
        try
        {
            while (true)
            {
                TimeSpan left = MaxTime - Stopwatch.GetElapsedTime(started);
                if (left <= TimeSpan.Zero || read > MaxBytes)
                {
                    return Outcome.GaveUp;
                }

                using var wait = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
                wait.CancelAfter(left < IdleTime ? left : IdleTime);
                ReadResult result = await body.ReadAsync(wait.Token).ConfigureAwait(false);
                read += result.Buffer.Length;
                body.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return Outcome.Ended;
                }

                if (result.IsCanceled)
                {
                    return Outcome.GaveUp;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or IOException or BadHttpRequestException)
        {
            // A bound passed, the client reset the stream, or the handler left a read pending: end the call as it was.
            return Outcome.GaveUp;
        }
    }
}

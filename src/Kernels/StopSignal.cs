using System.Diagnostics;

namespace KvDb.Kernels;

/// <summary>
/// When a computation must stop: its caller's cancellation token, or a deadline read from the clock. The deadline is
/// checked directly because the token of a call whose deadline passed is cancelled by a timer callback on the thread
/// pool, and the kernels keep the pool's threads busy: on a small machine that callback waited for the pool to grow,
/// and an expired query kept reading for a second or more.
/// </summary>
/// <param name="DeadlineTimestamp">A <see cref="Stopwatch.GetTimestamp"/> value after which to stop; 0 = none.</param>
/// <param name="Token">The caller's cancellation.</param>
public readonly record struct StopSignal(long DeadlineTimestamp, CancellationToken Token)
{
    /// <summary>A signal that never fires.</summary>
    public static StopSignal None => default;

    /// <summary>The signal for <paramref name="token"/> and an absolute UTC <paramref name="deadline"/> (<see cref="DateTime.MaxValue"/> = none).</summary>
    public static StopSignal For(DateTime deadline, CancellationToken token)
    {
        if (deadline == DateTime.MaxValue)
        {
            return new StopSignal(0, token);
        }

        double seconds = Math.Max(0, (deadline - DateTime.UtcNow).TotalSeconds);
        return new StopSignal(Stopwatch.GetTimestamp() + Math.Max(1, (long)Math.Min(seconds * Stopwatch.Frequency, long.MaxValue / 4)), token);
    }

    /// <summary>True once the token is cancelled or the deadline passed.</summary>
    public bool IsSet => Token.IsCancellationRequested || (DeadlineTimestamp != 0 && Stopwatch.GetTimestamp() > DeadlineTimestamp);

    /// <summary>
    /// Throws when <see cref="IsSet"/>: <see cref="DeadlineExceededException"/> when the deadline passed, else
    /// <see cref="OperationCanceledException"/> (the token was cancelled): the status differs for the client.
    /// </summary>
    public void ThrowIfSet()
    {
        // The deadline first: gRPC also cancels the call's token when the deadline passes, and the cause is the deadline.
        if (DeadlineTimestamp != 0 && Stopwatch.GetTimestamp() > DeadlineTimestamp)
        {
            throw new DeadlineExceededException();
        }

        if (Token.IsCancellationRequested)
        {
            throw new OperationCanceledException("the call was cancelled", Token);
        }
    }
}

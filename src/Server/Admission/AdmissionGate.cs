using System.Diagnostics;
using System.Threading.RateLimiting;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;

namespace KvDb.Server.Admission;

/// <summary>
/// A bounded admission limit for one kind of work: at most <see cref="Limit"/> run at once, at most
/// <see cref="QueueLimit"/> wait, none waits longer than <see cref="MaxWait"/>. A call that finds the queue full, or
/// waits out its turn, is refused with RESOURCE_EXHAUSTED carrying a <c>google.rpc.RetryInfo</c>: overload becomes a
/// fast answer the client can back off on, never a queue that grows with the number of callers. Thread-safe.
/// </summary>
public sealed class AdmissionGate : IDisposable
{
    private readonly ConcurrencyLimiter _limiter;
    private long _admitted;
    private long _rejected;
    private int _running;

    /// <summary>Mean seconds a lease was held (EWMA, stored as double bits): what the retry hint scales.</summary>
    private long _meanHeldBits = BitConverter.DoubleToInt64Bits(0.01);

    /// <summary>Creates a gate named <paramref name="work"/> (it appears in refusals and metrics).</summary>
    public AdmissionGate(string work, int limit, int queueLimit, TimeSpan maxWait)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(queueLimit);
        Work = work;
        Limit = limit;
        QueueLimit = queueLimit;
        MaxWait = maxWait;
        _limiter = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = limit,
            QueueLimit = queueLimit,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
    }

    /// <summary>What this gate admits ("attend", "append").</summary>
    public string Work { get; }

    /// <summary>Most calls running at once.</summary>
    public int Limit { get; }

    /// <summary>Most calls waiting for a slot.</summary>
    public int QueueLimit { get; }

    /// <summary>Longest a call waits for a slot before it is refused.</summary>
    public TimeSpan MaxWait { get; }

    /// <summary>Calls admitted since start.</summary>
    public long Admitted => Interlocked.Read(ref _admitted);

    /// <summary>Calls refused with RESOURCE_EXHAUSTED since start.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Calls holding a slot now.</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>
    /// Waits for a slot (bounded by the queue, <see cref="MaxWait"/> and <paramref name="cancellationToken"/>); the
    /// returned lease frees it. Throws RESOURCE_EXHAUSTED with a retry hint when refused, or
    /// <see cref="OperationCanceledException"/> when the call itself was cancelled or its deadline passed.
    /// </summary>
    public async ValueTask<Slot> EnterAsync(CancellationToken cancellationToken)
    {
        RateLimitLease lease = _limiter.AttemptAcquire(1);
        if (!lease.IsAcquired)
        {
            lease.Dispose();
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(MaxWait);
            try
            {
                lease = await _limiter.AcquireAsync(1, wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw Refuse($"waited {MaxWait.TotalMilliseconds:0} ms for one of {Limit} {Work} slots");
            }

            if (!lease.IsAcquired)
            {
                lease.Dispose();
                throw Refuse($"{Limit} {Work} calls are running and {QueueLimit} are waiting");
            }
        }

        Interlocked.Increment(ref _admitted);
        Interlocked.Increment(ref _running);
        return new Slot(this, lease, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// How long a refused client should wait: about the time the calls ahead of it take to drain through the slots,
    /// from the mean time a slot was held, within [5 ms, 5 s].
    /// </summary>
    public TimeSpan RetryDelay()
    {
        double held = BitConverter.Int64BitsToDouble(Interlocked.Read(ref _meanHeldBits));
        double waiting = QueueLimit + Limit;
        double seconds = held * waiting / Limit;
        return TimeSpan.FromSeconds(Math.Clamp(seconds, 0.005, 5));
    }

    /// <inheritdoc />
    public void Dispose() => _limiter.Dispose();

    private RpcException Refuse(string why)
    {
        Interlocked.Increment(ref _rejected);
        TimeSpan delay = RetryDelay();
        string message = $"server busy: {why}; retry after {delay.TotalMilliseconds:0} ms (google.rpc.RetryInfo)";
        var status = new Google.Rpc.Status { Code = (int)Code.ResourceExhausted, Message = message };
        status.Details.Add(Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(delay) }));
        return status.ToRpcException();
    }

    private void Leave(RateLimitLease lease, long started)
    {
        double held = Stopwatch.GetElapsedTime(started).TotalSeconds;
        Interlocked.Decrement(ref _running);
        lease.Dispose();

        // A racy EWMA is fine: it only scales a hint.
        double mean = BitConverter.Int64BitsToDouble(Interlocked.Read(ref _meanHeldBits));
        Interlocked.Exchange(ref _meanHeldBits, BitConverter.DoubleToInt64Bits((mean * 0.9) + (held * 0.1)));
    }

    /// <summary>A held slot; disposing it frees the slot (once).</summary>
    public sealed class Slot : IDisposable
    {
        private readonly AdmissionGate _gate;
        private readonly RateLimitLease _lease;
        private readonly long _started;
        private int _left;

        internal Slot(AdmissionGate gate, RateLimitLease lease, long started)
        {
            _gate = gate;
            _lease = lease;
            _started = started;
        }

        /// <inheritdoc />
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                _gate.Leave(_lease, _started);
            }
        }
    }
}

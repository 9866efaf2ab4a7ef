namespace KvDb.Server.Admission;

/// <summary>
/// The server's admission limits: one gate for attention work (each unary Attend and each message of an AttendStream
/// holds a slot while it runs) and one for AppendKv streams (a stream holds its slot from its first message to its
/// commit, so the K/V buffered by open appends is bounded too). Sizes from <see cref="KvDbServerOptions"/>.
/// </summary>
public sealed class AdmissionControl : IDisposable
{
    /// <summary>Creates both gates from the options (0 = the default derived from the cores).</summary>
    public AdmissionControl(KvDbServerOptions options)
    {
        int attend = options.MaxConcurrentAttends > 0 ? options.MaxConcurrentAttends : DefaultAttends(Environment.ProcessorCount);
        int append = options.MaxConcurrentAppends > 0 ? options.MaxConcurrentAppends : DefaultAppends(Environment.ProcessorCount);
        Attend = new AdmissionGate("attend", attend, attend * options.AdmissionQueueFactor, options.AdmissionWait);
        Append = new AdmissionGate("append", append, append * options.AdmissionQueueFactor, options.AdmissionWait);
    }

    /// <summary>Attend and AttendStream messages.</summary>
    public AdmissionGate Attend { get; }

    /// <summary>AppendKv streams.</summary>
    public AdmissionGate Append { get; }

    /// <summary>
    /// Attention runs at memory bandwidth and one request already spreads its heads or token ranges over the cores:
    /// twice the cores keeps every core busy while requests are decoded and encoded, more only queues inside the thread pool.
    /// </summary>
    public static int DefaultAttends(int cores) => Math.Max(4, 2 * cores);

    /// <summary>An append is mostly waiting for the network and the log: more streams than attends, still a bound.</summary>
    public static int DefaultAppends(int cores) => Math.Max(8, 4 * cores);

    /// <inheritdoc />
    public void Dispose()
    {
        Attend.Dispose();
        Append.Dispose();
    }
}

namespace KvDb.QueryEngine;

/// <summary>
/// What AUTO promises per query head: the relative L2 error of the partial output stays within
/// <see cref="Epsilon"/> except with probability at most <see cref="Delta"/> (over AUTO's random sample, under the
/// estimator's assumptions: docs/query-engine.md). <see cref="MaxLatencyMicros"/> (0 = none) lets a caller trade
/// quality for time: a head whose contract would cost more samples what the target allows and reports the wider
/// bound it reached.
/// </summary>
public sealed record QualityContract(double Epsilon, double Delta, long MaxLatencyMicros = 0)
{
    /// <summary>The server's default: 5% relative error, exceeded with probability at most 5%.</summary>
    public static QualityContract Default { get; } = new(0.05, 0.05);

    /// <summary>Checks the values; an invalid-argument <see cref="KvDbException"/> says what to send otherwise.</summary>
    public QualityContract Validated()
    {
        if (!double.IsFinite(Epsilon) || Epsilon <= 0 || Epsilon >= 1)
        {
            throw KvDbException.Invalid($"plan.epsilon {Epsilon} is out of range; send a relative error in (0, 1), e.g. 0.05, or 0 for the server's default");
        }

        if (!double.IsFinite(Delta) || Delta <= 0 || Delta >= 1)
        {
            throw KvDbException.Invalid($"plan.delta {Delta} is out of range; send a probability in (0, 1), e.g. 0.05, or 0 for the server's default");
        }

        if (MaxLatencyMicros < 0)
        {
            throw KvDbException.Invalid($"plan.max_latency_us {MaxLatencyMicros} is negative; send microseconds ≥ 0 (0 = no target)");
        }

        return this;
    }

    /// <summary>
    /// The contract of a request that set <paramref name="epsilon"/>, <paramref name="delta"/> and
    /// <paramref name="maxLatencyMicros"/> on the wire, where 0 takes <paramref name="defaults"/>' value.
    /// </summary>
    public static QualityContract FromWire(double epsilon, double delta, long maxLatencyMicros, QualityContract defaults) =>
        new QualityContract(epsilon == 0 ? defaults.Epsilon : epsilon, delta == 0 ? defaults.Delta : delta, maxLatencyMicros).Validated();
}

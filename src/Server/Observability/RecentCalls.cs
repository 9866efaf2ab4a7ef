namespace KvDb.Server.Observability;

/// <summary>One answered gRPC call, as the dashboard lists it.</summary>
public sealed record RecentCall(long UnixMs, string Method, string Code, double Micros, string Plan, double MassEstimate, long TokensAttended, string Detail);

/// <summary>
/// The last calls the server answered (a fixed ring, oldest overwritten): what the dashboard's recent queries,
/// recent errors and latency percentiles are read from. Prometheus keeps the totals; this keeps the examples.
/// </summary>
public sealed class RecentCalls
{
    private readonly RecentCall?[] _ring;
    private readonly Lock _gate = new();
    private long _next;

    /// <summary>Creates a ring of <paramref name="capacity"/> calls.</summary>
    public RecentCalls(int capacity = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _ring = new RecentCall?[capacity];
    }

    /// <summary>Calls recorded since start.</summary>
    public long Total
    {
        get
        {
            lock (_gate)
            {
                return _next;
            }
        }
    }

    /// <summary>Records a call.</summary>
    public void Add(RecentCall call)
    {
        lock (_gate)
        {
            _ring[_next % _ring.Length] = call;
            _next++;
        }
    }

    /// <summary>The calls held, newest first.</summary>
    public List<RecentCall> Newest(int limit)
    {
        lock (_gate)
        {
            var list = new List<RecentCall>(Math.Min(limit, _ring.Length));
            for (long i = _next - 1; i >= 0 && i >= _next - _ring.Length && list.Count < limit; i--)
            {
                list.Add(_ring[i % _ring.Length]!);
            }

            return list;
        }
    }
}

using System.Collections.Concurrent;
using Grpc.Core;

namespace KvDb.Fuzz.Requests;

/// <summary>What a request-fuzzing run saw: calls made, their status codes, and every broken invariant.</summary>
internal sealed class RequestFuzzReport
{
    private readonly ConcurrentDictionary<StatusCode, int> _statuses = new();
    private readonly ConcurrentQueue<string> _violations = new();
    private int _requests;

    /// <summary>Fuzzed calls made (setup and checks not counted).</summary>
    public int Requests => _requests;

    /// <summary>Calls per final status code.</summary>
    public IReadOnlyDictionary<StatusCode, int> Statuses => _statuses;

    /// <summary>Broken invariants: INTERNAL/UNKNOWN answers, calls past their deadline, client-side failures, changed data, an unanswering server.</summary>
    public IReadOnlyCollection<string> Violations => _violations;

    /// <summary>Wall time of the fuzzing loop.</summary>
    public TimeSpan Elapsed { get; set; }

    /// <summary>True when every protected context read back exactly as before the run.</summary>
    public bool DataIntact { get; set; }

    public void Count(StatusCode status)
    {
        Interlocked.Increment(ref _requests);
        _statuses.AddOrUpdate(status, 1, (_, n) => n + 1);
    }

    public void Violation(string what) => _violations.Enqueue(what);
}

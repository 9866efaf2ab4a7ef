using Grpc.Core;

namespace KvDb.Load;

/// <summary>
/// What the engines observed, shared by all of them: latencies per call kind (one list per engine and kind, merged at
/// the end, so recording takes no lock), status codes, refusals honoured, tokens appended and stalls.
/// </summary>
public sealed class LoadStats
{
    private readonly long[] _codes = new long[17];
    private readonly string?[] _firstDetail = new string?[17];
    private long _completed;
    private long _tokens;
    private long _rejections;
    private long _stalls;

    /// <summary>Calls completed (any status): the watchdog's measure of progress.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Tokens appended and acknowledged (per layer counted once).</summary>
    public long Tokens => Interlocked.Read(ref _tokens);

    /// <summary>RESOURCE_EXHAUSTED answers the engines backed off on.</summary>
    public long Rejections => Interlocked.Read(ref _rejections);

    /// <summary>Calls that ran past their deadline.</summary>
    public long Stalls => Interlocked.Read(ref _stalls);

    /// <summary>Answers per status code (index = the code).</summary>
    public long Code(StatusCode code) => Interlocked.Read(ref _codes[(int)code]);

    /// <summary>Counts one answer.</summary>
    public void Answer(StatusCode code)
    {
        Interlocked.Increment(ref _codes[(int)code]);
        Interlocked.Increment(ref _completed);
        if (code == StatusCode.ResourceExhausted)
        {
            Interlocked.Increment(ref _rejections);
        }
        else if (code == StatusCode.DeadlineExceeded)
        {
            Interlocked.Increment(ref _stalls);
        }
    }

    /// <summary>The first status detail seen with <paramref name="code"/> (null when none): what to look at in a failed run.</summary>
    public string? FirstDetail(StatusCode code) => Volatile.Read(ref _firstDetail[(int)code]);

    /// <summary>Counts one failed answer and keeps its detail if it is the first of its code.</summary>
    public void Answer(StatusCode code, string detail)
    {
        Interlocked.CompareExchange(ref _firstDetail[(int)code], detail, null);
        Answer(code);
    }

    /// <summary>Counts acknowledged tokens.</summary>
    public void Appended(int tokens) => Interlocked.Add(ref _tokens, tokens);
}

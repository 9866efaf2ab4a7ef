namespace KvDb.TestKit.Faults;

/// <summary>The outcome of checking a server against an <see cref="AppendLedger"/>: counts plus the first few problems, for the report.</summary>
public sealed class LedgerCheck
{
    private const int MaxProblems = 10;
    private readonly List<string> _problems = [];

    /// <summary>Acknowledged tokens (per layer) the server no longer has.</summary>
    public long LostTokens { get; private set; }

    /// <summary>Reads that served bytes, lengths or attention other than what was sent.</summary>
    public long TornReads { get; private set; }

    /// <summary>EXACT Attend spot checks made.</summary>
    public int AttendChecks { get; set; }

    public IReadOnlyList<string> Problems => _problems;

    // Workload loops report torn reads while the verifier runs, so every count changes under the one lock.
    public void Lost(long tokens, string problem)
    {
        lock (_problems)
        {
            LostTokens += tokens;
            Note(problem);
        }
    }

    public void Torn(string problem)
    {
        lock (_problems)
        {
            TornReads++;
            Note(problem);
        }
    }

    /// <summary>Adds the counts and problems of <paramref name="other"/>.</summary>
    public void Add(LedgerCheck other)
    {
        ArgumentNullException.ThrowIfNull(other);
        lock (_problems)
        {
            LostTokens += other.LostTokens;
            TornReads += other.TornReads;
            AttendChecks += other.AttendChecks;
            foreach (string p in other.Problems)
            {
                Note(p);
            }
        }
    }

    private void Note(string problem)
    {
        if (_problems.Count < MaxProblems)
        {
            _problems.Add(problem);
        }
    }
}

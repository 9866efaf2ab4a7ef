namespace KvDb.Fuzz.Requests;

/// <summary>How much to fuzz: calls, concurrency, the time bounds, and the seed that makes a run repeatable (per worker order aside).</summary>
internal sealed record RequestFuzzOptions(int Requests, int Workers = 4, int Seed = 16)
{
    /// <summary>The whole run stops here even if fewer calls were made.</summary>
    public TimeSpan MaxDuration { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Each call's deadline: a call still running then counts as a hang.</summary>
    public TimeSpan CallDeadline { get; init; } = TimeSpan.FromSeconds(15);
}

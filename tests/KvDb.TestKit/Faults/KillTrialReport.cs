namespace KvDb.TestKit.Faults;

/// <summary>
/// What a run of kill -9 trials of one operation found. <see cref="LostTokens"/>, <see cref="TornReads"/> and
/// <see cref="RestartFailures"/> must all be 0; <see cref="Problems"/> says what went wrong first when they are not.
/// <see cref="OperationsDone"/> counts the operation's calls that completed (checkpoints, compactions, reads and evictions,
/// sparse Attends; appends for Append): the kills landed among that many.
/// </summary>
public sealed record KillTrialReport(
    FaultOperation Operation,
    int Trials,
    long LostTokens,
    long TornReads,
    int RestartFailures,
    IReadOnlyList<double> RestartSeconds,
    long AckedTokens,
    int Contexts,
    int IndexFiles,
    long OperationsDone,
    IReadOnlyList<string> Problems)
{
    public double RestartP50Seconds => Percentile(0.5);

    public double RestartMaxSeconds => RestartSeconds.Count == 0 ? double.NaN : RestartSeconds.Max();

    private double Percentile(double p)
    {
        if (RestartSeconds.Count == 0)
        {
            return double.NaN;
        }

        double[] sorted = [.. RestartSeconds.Order()];
        return sorted[(int)Math.Min(sorted.Length - 1, Math.Floor(p * sorted.Length))];
    }
}

using KvDb.TestKit;
using KvDb.TestKit.Faults;
using Xunit.Abstractions;

namespace KvDb.IntegrationTests;

/// <summary>
/// The CI sample of the bench's faults suite: kill -9 trials per operation (appends, checkpoint, index save, tier moves,
/// compaction) against the real server; after every restart nothing acknowledged is lost, every context has equal
/// layer lengths (no half-applied stream), nothing read differs from what was sent (ReadKv bit-exact, EXACT Attend vs
/// the f64 reference) and the server came back within <see cref="KillTrials.RestartLimit"/>.
/// </summary>
public sealed class FaultInjectionTests : IDisposable
{
    private readonly TempDirectory _dir = new("kvdb-faults-");
    private readonly ITestOutputHelper _output;

    public FaultInjectionTests(ITestOutputHelper output)
    {
        _output = output;
    }

    // A bound on the whole trial loop: a call that never returns after a restart (seen once in CI, an idle server not
    // answering a read after SIGKILL recovery) fails the test instead of hanging the run.
    [Theory(Timeout = 300_000)]
    [InlineData(FaultOperation.Append, 20)]
    [InlineData(FaultOperation.Checkpoint, 4)]
    [InlineData(FaultOperation.IndexSave, 4)]
    [InlineData(FaultOperation.TierMove, 4)]
    [InlineData(FaultOperation.Compaction, 4)]
    public async Task Kill_during_operation_loses_nothing_acknowledged_and_serves_nothing_torn(FaultOperation operation, int trials)
    {
        KillTrialReport report = await KillTrials.RunAsync(operation, trials, _dir.Path, seed: (int)operation + 1, _output.WriteLine);

        _output.WriteLine($"{operation}: {report.OperationsDone} operations completed; restarts p50 {report.RestartP50Seconds:F2} s max {report.RestartMaxSeconds:F2} s; {report.IndexFiles} index files; problems: {string.Join(" | ", report.Problems)}");
        Assert.Equal(trials, report.Trials);
        Assert.Equal(0, report.RestartFailures);
        Assert.Equal(0, report.LostTokens);
        Assert.Equal(0, report.TornReads);
        Assert.True(report.AckedTokens > 0, "no append was acknowledged before the kills");
        Assert.True(report.OperationsDone > 0, $"no {operation} completed before the kills");
        Assert.All(report.RestartSeconds, s => Assert.True(s < KillTrials.RestartLimit.TotalSeconds));
    }

    public void Dispose() => _dir.Dispose();
}

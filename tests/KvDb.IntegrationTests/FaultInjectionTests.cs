using KvDb.TestKit;
using KvDb.TestKit.Faults;
using Xunit.Abstractions;

namespace KvDb.IntegrationTests;

/// <summary>
/// The CI sample of the bench's faults suite: a few kill -9 trials per operation (checkpoint, index save, tier moves,
/// compaction) against the real server; after every restart nothing acknowledged is lost, nothing read differs from
/// what was sent (ReadKv bit-exact, EXACT Attend vs the f64 reference) and the server came back within
/// <see cref="KillTrials.RestartLimit"/>. Appends alone: <see cref="CrashRecoveryTests"/>.
/// </summary>
public sealed class FaultInjectionTests : IDisposable
{
    private const int Trials = 4;
    private readonly TempDirectory _dir = new("kvdb-faults-");
    private readonly ITestOutputHelper _output;

    public FaultInjectionTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Theory(Timeout = 240_000)]
    [InlineData(FaultOperation.Checkpoint)]
    [InlineData(FaultOperation.IndexSave)]
    [InlineData(FaultOperation.TierMove)]
    [InlineData(FaultOperation.Compaction)]
    public async Task Kill_during_operation_loses_nothing_acknowledged_and_serves_nothing_torn(FaultOperation operation)
    {
        KillTrialReport report = await KillTrials.RunAsync(operation, Trials, _dir.Path, seed: (int)operation + 1, _output.WriteLine);

        _output.WriteLine($"{operation}: restarts p50 {report.RestartP50Seconds:F2} s max {report.RestartMaxSeconds:F2} s; {report.IndexFiles} index files; problems: {string.Join(" | ", report.Problems)}");
        Assert.Equal(Trials, report.Trials);
        Assert.Equal(0, report.RestartFailures);
        Assert.Equal(0, report.LostTokens);
        Assert.Equal(0, report.TornReads);
        Assert.True(report.AckedTokens > 0, "no append was acknowledged before the kills");
        Assert.All(report.RestartSeconds, s => Assert.True(s < KillTrials.RestartLimit.TotalSeconds));
    }

    public void Dispose() => _dir.Dispose();
}

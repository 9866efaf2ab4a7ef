using Grpc.Core;
using KvDb.Load;
using KvDb.TestKit;

namespace KvDb.IntegrationTests;

/// <summary>
/// The short CI load run: 16 engines for 10 s against the real kvdb process, with admission limits small enough that
/// back-pressure happens. No server fault, no call past its deadline, no deadlock, RSS under the CPU budget plus the
/// documented overhead, and work got done.
/// </summary>
public sealed class LoadTests : IDisposable
{
    private const long CpuBudget = 128L << 20;

    private readonly TempDirectory _dir = new("kvdb-load-");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Sixteen_engines_for_ten_seconds_meet_the_invariants()
    {
        using ServerProcess server = await ServerProcess.StartAsync(_dir.Path, CpuBudget, "--http-port", "-1", "--max-attends", "4", "--max-appends", "4");
        var options = new LoadOptions
        {
            Engines = 16,
            Duration = TimeSpan.FromSeconds(10),
            CpuBudgetBytes = CpuBudget,
            PrefixTokens = 512,
            DecodeSteps = 16,
            CallDeadline = TimeSpan.FromSeconds(20),
            StallLimit = TimeSpan.FromSeconds(15),
        };

        LoadReport report = await LoadRun.RunAsync(options, server.Address, server.Pid, _ => { });

        Assert.Equal(0, report.Faults);
        Assert.Equal(0, report.Stalls);
        Assert.False(report.Deadlocked);
        Assert.InRange(report.PeakRssBytes, 1, CpuBudget + options.OverheadBytes);
        Assert.True(report.Count(StatusCode.OK) > 100, $"only {report.Count(StatusCode.OK)} calls succeeded");
        Assert.True(report.Latency.ContainsKey(CallKind.Attend) && report.Latency.ContainsKey(CallKind.AttendStream), "no attention call succeeded");
    }
}

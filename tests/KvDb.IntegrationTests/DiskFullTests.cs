using System.Globalization;
using Grpc.Core;
using KvDb.Client;
using KvDb.TestKit;
using KvDb.TestKit.Faults;
using Xunit.Abstractions;

namespace KvDb.IntegrationTests;

/// <summary>
/// The real server with its data directory on a 64 MiB tmpfs: appends until the filesystem is full. The append that
/// does not fit is RESOURCE_EXHAUSTED, everything acknowledged stays readable bit-exact, and once space returns (a
/// ballast file placed there is deleted) appends succeed again; a SIGKILL restart on that filesystem recovers it all.
/// </summary>
public sealed class DiskFullTests
{
    private const int AppendTokens = 1024;
    private const long Reserve = 8L << 20;
    private const int BallastBytes = 16 << 20;
    private readonly ITestOutputHelper _output;

    public DiskFullTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [SkippableFact(Timeout = 240_000)]
    public async Task A_full_disk_refuses_appends_keeps_everything_acknowledged_and_takes_appends_again_when_space_returns()
    {
        using TmpfsMount? fs = TmpfsMount.TryMount(64, out string? whyNot);
        Skip.If(fs is null, whyNot);
        string data = Path.Combine(fs.Path, "data");
        string ballast = Path.Combine(fs.Path, "ballast");
        await File.WriteAllBytesAsync(ballast, new byte[BallastBytes]);
        string[] args = ["--disk-reserve", Reserve.ToString(CultureInfo.InvariantCulture), "--http-port", "-1", "--checkpoint-log-bytes", (1L << 40).ToString(CultureInfo.InvariantCulture)];
        var ledger = new AppendLedger();
        var rng = new Random(16);
        int acknowledged = 0;
        using (ServerProcess server = await ServerProcess.StartAsync(data, 256L << 20, KillTrials.RestartLimit, args))
        using (var client = new KvDbClient(server.Address))
        {
            await client.CreateModelAsync(DeterministicKv.Model());
            RpcException? refused = null;
            for (int i = 0; i < 1000 && refused is null; i++)
            {
                refused = await TryAppendAsync(client, ledger, "f" + (i / 8));
                acknowledged += refused is null ? 1 : 0;
            }

            _output.WriteLine($"{acknowledged} appends of {AppendTokens} tokens acknowledged before: {refused?.Status}");
            Assert.NotNull(refused);
            Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
            Assert.True(acknowledged > 10, $"only {acknowledged} appends fitted");

            // Still full: refused again, and the reads go on, exact.
            Assert.Equal(StatusCode.ResourceExhausted, (await TryAppendAsync(client, ledger, "again"))?.StatusCode);
            LedgerCheck whileFull = await ledger.VerifyAsync(client, rng, CancellationToken.None);
            Assert.Equal(0, whileFull.LostTokens);
            Assert.Equal(0, whileFull.TornReads);

            File.Delete(ballast);
            Assert.Null(await TryAppendAsync(client, ledger, "after"));
            Assert.Null(await TryAppendAsync(client, ledger, "f0"));
            server.Kill();
        }

        using (ServerProcess restarted = await ServerProcess.StartAsync(data, 256L << 20, KillTrials.RestartLimit, args))
        using (var client = new KvDbClient(restarted.Address))
        {
            LedgerCheck afterRestart = await ledger.VerifyAsync(client, rng, CancellationToken.None);
            _output.WriteLine($"after the restart: {ledger.Contexts} contexts, {ledger.AckedTokens} tokens; problems: {string.Join(" | ", afterRestart.Problems)}");
            Assert.Equal(0, afterRestart.LostTokens);
            Assert.Equal(0, afterRestart.TornReads);
            Assert.Equal((acknowledged + 2L) * AppendTokens, ledger.AckedTokens);
            Assert.Null(await TryAppendAsync(client, ledger, "restarted"));
        }
    }

    /// <summary>One append of <see cref="AppendTokens"/> tokens (creating the context first if new); the refusal, or null when acknowledged.</summary>
    private static async Task<RpcException?> TryAppendAsync(KvDbClient client, AppendLedger ledger, string id)
    {
        if (ledger.Snapshot().All(c => c.Id != id))
        {
            await client.CreateContextAsync(DeterministicKv.ModelName, id: id);
            ledger.Created(id);
        }

        long from = ledger.Acked(id);
        ledger.Sending(id, from + AppendTokens);
        try
        {
            ledger.Acknowledged(id, await DeterministicKv.AppendAsync(client, id, from, AppendTokens));
            return null;
        }
        catch (RpcException e)
        {
            return e;
        }
    }
}

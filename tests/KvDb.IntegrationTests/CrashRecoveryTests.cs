using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.TestKit;
using KvDb.TestKit.Faults;
using Xunit.Abstractions;

namespace KvDb.IntegrationTests;

/// <summary>
/// Appends through the client while the real server is killed with SIGKILL at random moments; after each
/// restart on the same data directory every acknowledged token must be there bit-exact, every context must
/// have equal layer lengths (no half-applied stream), and nothing beyond what was sent may appear
/// (<see cref="KillTrials"/>, the same trials the bench's faults suite runs 50 at a time per operation).
/// </summary>
public sealed class CrashRecoveryTests : IDisposable
{
    private const int Trials = 20;
    private const int Layers = DeterministicKv.Layers;
    private readonly TempDirectory _dir = new("kvdb-crash-");
    private readonly ITestOutputHelper _output;

    public CrashRecoveryTests(ITestOutputHelper output)
    {
        _output = output;
    }

    // A bound on the whole trial loop (normally under a minute): a call that never returns after a restart (seen once
    // in CI, an idle server not answering a read after SIGKILL recovery) fails the test instead of hanging the run.
    [Fact(Timeout = 300_000)]
    public async Task Every_acknowledged_token_survives_sigkill_bit_exact()
    {
        KillTrialReport report = await KillTrials.RunAsync(FaultOperation.Append, Trials, _dir.Path, seed: 12345, _output.WriteLine);

        _output.WriteLine($"{report.Trials} kills, {report.Contexts} contexts, {report.AckedTokens} tokens acknowledged per layer; problems: {string.Join(" | ", report.Problems)}");
        Assert.Equal(Trials, report.Trials);
        Assert.Equal(0, report.RestartFailures);
        Assert.Equal(0, report.LostTokens);
        Assert.Equal(0, report.TornReads);
        Assert.True(report.AckedTokens > 0, "no append was acknowledged before the kills");
    }

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("checkpoint.kvc", true)]
    [InlineData("wal", false)]
    [InlineData("blocks", true)]
    public async Task Flipped_bytes_in_data_files_are_detected_and_the_server_still_starts(string target, bool alwaysDetected)
    {
        var lengths = new Dictionary<string, long>(StringComparer.Ordinal);
        using (ServerProcess server = await ServerProcess.StartAsync(_dir.Path))
        using (var client = new KvDbClient(server.Address))
        {
            await client.CreateModelAsync(DeterministicKv.Model());
            for (int c = 0; c < 4; c++)
            {
                string id = "k" + c;
                await client.CreateContextAsync("m", id: id);
                await DeterministicKv.AppendAsync(client, id, 0, 300);
                lengths[id] = 300;
                if (c == 1)
                {
                    await client.CheckpointAsync();
                    await client.CheckpointAsync();
                }
            }

            await DeterministicKv.AppendAsync(client, "k0", 300, 50);
            lengths["k0"] = 350;
            server.Kill();
        }

        // Flip bytes inside the written part of the target file(s).
        var rng = new Random(target.Length);
        string[] files = File.Exists(Path.Combine(_dir.Path, target))
            ? [Path.Combine(_dir.Path, target)]
            : Directory.GetFiles(Path.Combine(_dir.Path, target), target + ".log.*");
        foreach (string f in files)
        {
            byte[] bytes = File.ReadAllBytes(f);
            for (int i = 0; i < 20; i++)
            {
                bytes[64 + rng.Next(bytes.Length - 64)] ^= (byte)(1 + rng.Next(255));
            }

            File.WriteAllBytes(f, bytes);
        }

        using ServerProcess restarted = await ServerProcess.StartAsync(_dir.Path);
        using var reader = new KvDbClient(restarted.Address);
        StatsResponse stats = await reader.GetStatsAsync();
        for (int i = 0; i < 50 && alwaysDetected && stats.CorruptRecords == 0; i++)
        {
            await Task.Delay(100); // the disk-tier scrub runs in the background after start
            stats = await reader.GetStatsAsync();
        }

        _output.WriteLine($"{target}: {stats.CorruptRecords} corrupt records reported; server output: {string.Join(" | ", restarted.Output)}");
        if (alwaysDetected)
        {
            Assert.True(stats.CorruptRecords >= 1);
        }

        // Whatever survived is exact; what did not is an error, never wrong bytes.
        foreach ((string id, long expected) in lengths)
        {
            Context c;
            try
            {
                c = await reader.GetContextAsync(id);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
                continue;
            }

            Assert.True(c.NumTokens <= expected);
            for (int layer = 0; layer < Layers; layer++)
            {
                try
                {
                    (int[] ids, byte[] keys, byte[] values) = await reader.ReadLayerAsync(id, layer);
                    Assert.Equal(DeterministicKv.TokenIds(id, 0, ids.Length), ids);
                    (byte[] k, byte[] v) = DeterministicKv.Kv(id, layer, 0, ids.Length);
                    Assert.True(k.AsSpan().SequenceEqual(keys) && v.AsSpan().SequenceEqual(values), $"{id} layer {layer} served wrong bytes");
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.DataLoss)
                {
                    Assert.True((await reader.GetStatsAsync()).CorruptRecords >= 1);
                }
            }
        }
    }
}

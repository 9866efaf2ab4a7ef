using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.TestKit;
using KvDb.TestKit.Faults;
using Xunit.Abstractions;

namespace KvDb.IntegrationTests;

/// <summary>
/// Bytes flipped in the data files of a killed server: detected, reported, never served, and the server still starts.
/// SIGKILL at random moments of appends and the other operations: <see cref="FaultInjectionTests"/>.
/// </summary>
public sealed class CrashRecoveryTests : IDisposable
{
    private const int Layers = DeterministicKv.Layers;
    private readonly TempDirectory _dir = new("kvdb-crash-");
    private readonly ITestOutputHelper _output;

    public CrashRecoveryTests(ITestOutputHelper output)
    {
        _output = output;
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

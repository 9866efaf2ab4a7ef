using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.TestKit;
using KvDb.TestKit.Faults;

namespace KvDb.IntegrationTests;

/// <summary>
/// Clients that go away mid-stream against the real durable server: an AppendKv whose connection is dropped after
/// some chunks leaves the context as it was (now and after a SIGKILL restart) and no transaction open; an
/// AttendStream cancelled mid-way leaves no block pinned.
/// </summary>
public sealed class ClientDisconnectTests : IDisposable
{
    private const string Id = "d";
    private const int Tokens = 512;
    private readonly TempDirectory _dir = new("kvdb-disconnect-");

    [Fact(Timeout = 180_000)]
    public async Task An_append_stream_dropped_mid_way_applies_nothing_now_or_after_a_restart()
    {
        var ledger = new AppendLedger();
        using (ServerProcess server = await ServerProcess.StartAsync(_dir.Path, 64L << 20, KillTrials.RestartLimit, "--http-port", "-1"))
        {
            using (var client = new KvDbClient(server.Address))
            {
                await client.CreateModelAsync(DeterministicKv.Model());
                await client.CreateContextAsync(DeterministicKv.ModelName, id: Id);
                ledger.Created(Id);
                ledger.Sending(Id, Tokens);
                ledger.Acknowledged(Id, await DeterministicKv.AppendAsync(client, Id, 0, Tokens));
            }

            // A second client writes all of layer 0 and half of layer 1, then its connection goes away.
            using (var dropped = new KvDbClient(server.Address))
            {
                using KvAppendStream stream = dropped.OpenAppend(Id);
                int[] ids = DeterministicKv.TokenIds(Id, Tokens, 64);
                (byte[] k0, byte[] v0) = DeterministicKv.Kv(Id, 0, Tokens, 64);
                (byte[] k1, byte[] v1) = DeterministicKv.Kv(Id, 1, Tokens, 32);
                await stream.WriteAsync(0, ids, k0, v0, KvDType.F32, DeterministicKv.KvHeads, DeterministicKv.HeadDim);
                await stream.WriteAsync(1, ids.AsSpan(0, 32), k1, v1, KvDType.F32, DeterministicKv.KvHeads, DeterministicKv.HeadDim);
                ledger.Sending(Id, Tokens + 64);
            }

            using (var client = new KvDbClient(server.Address))
            {
                // The server notices the reset and rolls back; until then the stream's rows may be visible (read-uncommitted).
                Context c = await client.GetContextAsync(Id);
                for (int i = 0; i < 200 && c.LayerTokens.Any(t => t != Tokens); i++)
                {
                    await Task.Delay(25);
                    c = await client.GetContextAsync(Id);
                }

                Assert.Equal([Tokens, Tokens], c.LayerTokens);
                await AssertExactAsync(client, ledger);

                // No transaction was left open: the next append from the same position commits.
                ledger.Acknowledged(Id, await DeterministicKv.AppendAsync(client, Id, Tokens, 16));
            }

            server.Kill();
        }

        using (ServerProcess restarted = await ServerProcess.StartAsync(_dir.Path, 64L << 20, KillTrials.RestartLimit, "--http-port", "-1"))
        using (var client = new KvDbClient(restarted.Address))
        {
            Assert.Equal([Tokens + 16, Tokens + 16], (await client.GetContextAsync(Id)).LayerTokens);
            await AssertExactAsync(client, ledger);
        }
    }

    [Fact(Timeout = 180_000)]
    public async Task An_attend_stream_cancelled_mid_way_leaves_no_block_pinned()
    {
        using ServerProcess server = await ServerProcess.StartAsync(_dir.Path, 64L << 20, KillTrials.RestartLimit, "--http-port", "-1");
        using var client = new KvDbClient(server.Address);
        await client.CreateModelAsync(DeterministicKv.Model());
        await client.CreateContextAsync(DeterministicKv.ModelName, id: Id);
        await DeterministicKv.AppendAsync(client, Id, 0, Tokens);
        await client.EvictAsync(0);

        var q = new float[DeterministicKv.QueryHeads * DeterministicKv.HeadDim];
        using (var cancel = new CancellationTokenSource())
        {
            using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = client.Attention.AttendStream(cancellationToken: cancel.Token);
            for (int i = 0; i < 8; i++)
            {
                await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(Id, i % DeterministicKv.Layers, q, 1, DeterministicKv.QueryHeads, DeterministicKv.HeadDim, plan: new Plan { Kind = PlanKind.Exact }));
            }

            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            await cancel.CancelAsync();
        }

        // Every full block can go back to disk: none is still pinned by the cancelled stream's snapshots.
        long cpuBytes = -1;
        for (int i = 0; i < 100 && cpuBytes != 0; i++)
        {
            await client.EvictAsync(0);
            cpuBytes = (await client.GetStatsAsync()).Tiers.Single(t => t.Name == "cpu").Bytes;
            await Task.Delay(cpuBytes == 0 ? 0 : 20);
        }

        Assert.Equal(0, cpuBytes);
        Assert.Equal(Tokens, (await client.GetContextAsync(Id)).NumTokens);
    }

    public void Dispose() => _dir.Dispose();

    private static async Task AssertExactAsync(KvDbClient client, AppendLedger ledger)
    {
        LedgerCheck check = await ledger.VerifyAsync(client, new Random(4), CancellationToken.None);
        Assert.Equal(0, check.LostTokens);
        Assert.Equal(0, check.TornReads);
        Assert.Equal(1, check.AttendChecks);
    }
}

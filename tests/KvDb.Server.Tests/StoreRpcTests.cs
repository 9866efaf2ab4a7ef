using Grpc.Core;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Server.Tests;

public sealed class StoreRpcTests : IClassFixture<ServerFixture>
{
    private readonly ServerFixture _fx;

    public StoreRpcTests(ServerFixture fx)
    {
        _fx = fx;
    }

    [Fact]
    public async Task ReadKv_returns_appended_rows_in_wire_layout_and_fork_shares_them()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("rpc-read"));
        Context a = await client.CreateContextAsync(model.Name);
        await EndToEndTests.Load(client, model, a.Id, 150);
        var ids = new int[150];
        TestModels.Workload(model, 150, 0).FillTokenIds(0, ids);

        for (int layer = 0; layer < 2; layer++)
        {
            (int[] readIds, byte[] keys, byte[] values) = await client.ReadLayerAsync(a.Id, layer);
            SyntheticWorkload w = TestModels.Workload(model, 150, layer);
            Assert.Equal(ids, readIds);
            Assert.Equal(w.KeyBytes(KvDType.F32, 0, 150), keys);
            Assert.Equal(w.ValueBytes(KvDType.F32, 0, 150), values);
        }

        var chunks = new List<ReadKvChunk>();
        await foreach (ReadKvChunk c in client.ReadKvAsync(a.Id, -1, 10, 20))
        {
            chunks.Add(c);
        }

        Assert.Equal([0, 1], chunks.Select(c => c.Layer));
        Assert.All(chunks, c => Assert.Equal([10L, 2, 32], c.Keys.Shape));
        Assert.Equal(ids.AsSpan(10, 10).ToArray(), chunks[0].TokenIds);

        Context f = await client.ForkContextAsync(a.Id, a.Id + "-fork");
        Assert.Equal(150, f.NumTokens);
        await client.DeleteContextAsync(a.Id);
        (int[] forkIds, _, _) = await client.ReadLayerAsync(f.Id, 1);
        Assert.Equal(ids, forkIds);

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (ReadKvChunk c in client.ReadKvAsync(f.Id, 0, 100, 151))
            {
                _ = c;
            }
        });
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        e = await Assert.ThrowsAsync<RpcException>(() => client.ForkContextAsync("no-such-context"));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
    }

    [Fact]
    public async Task ListContexts_pages_and_ttl_is_reported()
    {
        KvDbClient client = _fx.Client;
        Model model = await client.CreateModelAsync(TestModels.Small("rpc-list"));
        for (int i = 0; i < 5; i++)
        {
            await client.CreateContextAsync(model.Name, id: $"zz-list-{i}");
        }

        Context ttl = await client.CreateContextAsync(model.Name, "", "zz-list-ttl", null, 3600);
        Assert.True(ttl.ExpiresAtUnixMs - ttl.CreatedUnixMs == 3_600_000);
        var seen = new List<string>();
        string token = "zz-list";
        while (true)
        {
            ListContextsResponse page = await client.ListContextsAsync(2, token);
            seen.AddRange(page.Contexts.Select(c => c.Id).Where(id => id.StartsWith("zz-list", StringComparison.Ordinal)));
            if (page.NextPageToken.Length == 0)
            {
                break;
            }

            token = page.NextPageToken;
        }

        Assert.Equal(["zz-list-0", "zz-list-1", "zz-list-2", "zz-list-3", "zz-list-4", "zz-list-ttl"], seen);

        // UpdateContext: a field left unset keeps its value; bad input changes nothing.
        Context pinned = await client.UpdateContextAsync("zz-list-ttl", pinned: true);
        Assert.Equal((true, ttl.ExpiresAtUnixMs), (pinned.Pinned, pinned.ExpiresAtUnixMs));
        Context forever = await client.UpdateContextAsync("zz-list-ttl", ttlSeconds: 0);
        Assert.Equal((true, 0L), (forever.Pinned, forever.ExpiresAtUnixMs));
        Context shorter = await client.UpdateContextAsync("zz-list-ttl", ttlSeconds: 60, pinned: false);
        Assert.False(shorter.Pinned);
        Assert.InRange(shorter.ExpiresAtUnixMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), 50_000, 60_000);
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(() => client.UpdateContextAsync("zz-list-ttl", ttlSeconds: -1))).StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(() => client.UpdateContextAsync("zz-no-such", pinned: true))).StatusCode);
        Assert.Equal(shorter.ExpiresAtUnixMs, (await client.GetContextAsync("zz-list-ttl")).ExpiresAtUnixMs);
    }

    [Fact]
    public async Task Admin_reports_tiers_and_memory_only_servers_refuse_checkpoints()
    {
        StatsResponse stats = await _fx.Client.GetStatsAsync();
        Assert.False(stats.Durable);
        Assert.Equal("cpu", stats.Tiers[0].Name);
        var e = await Assert.ThrowsAsync<RpcException>(() => _fx.Client.CheckpointAsync());
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);

        using var dir = new TempDirectory("kvdb-admin-");
        await using (KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, DataDirectory = dir.Path, CpuBudgetBytes = 64L << 20 }))
        {
            using var client = new KvDbClient(server.Address);
            Model model = await client.CreateModelAsync(TestModels.Small("admin"));
            Context c = await client.CreateContextAsync(model.Name);
            await EndToEndTests.Load(client, model, c.Id, 64);
            CheckpointResponse cp = await client.CheckpointAsync();
            Assert.Equal(1, cp.Contexts);
            EvictResponse ev = await client.EvictAsync(0);
            Assert.Equal(8, ev.Blocks);
            StatsResponse s = await client.GetStatsAsync();
            Assert.True(s.Durable);
            Assert.Equal(0, s.Tiers[0].Bytes);
            Assert.Equal(8, s.Tiers[1].Blocks);
        }

        await using (KvDbServerHandle again = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, DataDirectory = dir.Path, CpuBudgetBytes = 64L << 20 }))
        {
            using var client = new KvDbClient(again.Address);
            ListContextsResponse all = await client.ListContextsAsync();
            Assert.Equal(64, Assert.Single(all.Contexts).NumTokens);
        }
    }

    [Fact]
    public async Task Compact_gives_the_space_of_deleted_contexts_back_and_stats_show_live_and_dead_bytes()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => _fx.Client.CompactAsync());
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Null((await _fx.Client.GetStatsAsync()).Disk);

        using var dir = new TempDirectory("kvdb-compact-");
        await using (KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, DataDirectory = dir.Path, CpuBudgetBytes = 64L << 20, CompactionDeadRatio = 0 }))
        {
            using var client = new KvDbClient(server.Address);
            Model model = await client.CreateModelAsync(TestModels.Small("compact"));
            var ids = new List<string>();
            for (int i = 0; i < 4; i++)
            {
                Context c = await client.CreateContextAsync(model.Name, "ns" + i, "compact-" + i, null, 0); // own namespaces: no block shared
                await EndToEndTests.Load(client, model, c.Id, 256);
                ids.Add(c.Id);
            }

            await client.CheckpointAsync();
            DiskSpace before = (await client.GetStatsAsync()).Disk;
            Assert.True(before.BlockLogLiveBytes > 0);
            Assert.Equal(0, before.BlockLogDeadBytes);
            for (int i = 0; i < 3; i++)
            {
                await client.DeleteContextAsync(ids[i]);
            }

            DiskSpace deleted = (await client.GetStatsAsync()).Disk;
            Assert.InRange(deleted.BlockLogDeadRatio, 0.74, 0.76);
            Assert.Equal(before.BlockLogLiveBytes / 4, deleted.BlockLogLiveBytes);

            CompactResponse r = await client.CompactAsync();
            long blocksPerContext = 256 / model.BlockSize * model.NumLayers;
            Assert.Equal(blocksPerContext, r.BlocksMoved);
            Assert.True(r.LogBytesAfter < r.LogBytesBefore / 3);
            DiskSpace after = (await client.GetStatsAsync()).Disk;
            Assert.Equal(1, after.Compactions);
            Assert.Equal(0, after.BlockLogDeadBytes);
            Assert.Equal(deleted.BlockLogLiveBytes, after.BlockLogLiveBytes);
        }

        await using (KvDbServerHandle again = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, DataDirectory = dir.Path, CpuBudgetBytes = 64L << 20 }))
        {
            using var client = new KvDbClient(again.Address);
            Assert.Equal(256, Assert.Single((await client.ListContextsAsync()).Contexts).NumTokens);
            Assert.Equal(0, (await client.GetStatsAsync()).CorruptRecords);
        }
    }
}

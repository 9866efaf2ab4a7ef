using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>
/// The eviction policy and pin tiers through the server: GetStats and /metrics name the policy and report each tier's
/// hits, misses and hit ratio (labelled with the policy); UpdateContext pins to a named tier.
/// </summary>
public sealed class EvictionPolicyRpcTests
{
    [Fact]
    public async Task The_default_policy_is_lru_in_get_stats_and_metrics()
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, CpuBudgetBytes = 64L << 20 });
        using var client = new KvDbClient(server.Address);
        Assert.Equal("lru", (await client.GetStatsAsync()).EvictionPolicy);
        using var http = new HttpClient();
        string text = await http.GetStringAsync(server.HttpAddress + "/metrics");
        Assert.Equal(0, MetricsTests.Value(text, "kvdb_tier_hits_total{tier=\"cpu\",policy=\"lru\"}"));
    }

    [Fact]
    public async Task Tier_hits_misses_and_ratios_move_and_are_labelled_with_the_policy()
    {
        string data = Path.Combine(Path.GetTempPath(), "kvdb-policy-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data, CpuBudgetBytes = 64L << 20, EvictionPolicy = Store.EvictionPolicy.TinyLfu });
            using var client = new KvDbClient(server.Address);
            Model model = await client.CreateModelAsync(TestModels.Small("policy"));
            await client.CreateContextAsync(model.Name, id: "p");
            await EndToEndTests.Load(client, model, "p", 256);
            Assert.True((await client.EvictAsync(0)).Blocks > 0);
            float[] q = TestModels.Workload(model, 256, 0).Queries(1, 3);

            // The first query promotes layer 0's blocks (misses), the second finds them (hits).
            await client.AttendAsync("p", 0, q, 1, model.NumQueryHeads, model.HeadDim);
            StatsResponse first = await client.GetStatsAsync();
            Assert.Equal("tinylfu", first.EvictionPolicy);
            Protocol.V1.TierStats cpu1 = first.Tiers.Single(t => t.Name == "cpu");
            int blocks = 256 / model.BlockSize;
            Assert.Equal(blocks, cpu1.Misses);
            await client.AttendAsync("p", 0, q, 1, model.NumQueryHeads, model.HeadDim);
            StatsResponse second = await client.GetStatsAsync();
            Protocol.V1.TierStats cpu2 = second.Tiers.Single(t => t.Name == "cpu");
            Assert.Equal((cpu1.Hits + blocks, cpu1.Misses), (cpu2.Hits, cpu2.Misses));
            Assert.Equal((double)cpu2.Hits / (cpu2.Hits + cpu2.Misses), cpu2.HitRatio, 12);
            Protocol.V1.TierStats disk = second.Tiers.Single(t => t.Name == "disk");
            Assert.Equal((long)blocks, disk.Hits);
            Assert.Equal(1.0, disk.HitRatio);

            using var http = new HttpClient();
            string text = await http.GetStringAsync(server.HttpAddress + "/metrics");
            StatsResponse now = await client.GetStatsAsync();
            Protocol.V1.TierStats cpu = now.Tiers.Single(t => t.Name == "cpu");
            Assert.Equal(cpu.Hits, MetricsTests.Value(text, "kvdb_tier_hits_total{tier=\"cpu\",policy=\"tinylfu\"}"));
            Assert.Equal(cpu.Misses, MetricsTests.Value(text, "kvdb_tier_misses_total{tier=\"cpu\",policy=\"tinylfu\"}"));
            Assert.Equal(cpu.HitRatio, MetricsTests.Value(text, "kvdb_tier_hit_ratio{tier=\"cpu\",policy=\"tinylfu\"}"), 9);
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public async Task Update_context_pins_to_a_named_tier()
    {
        string data = Path.Combine(Path.GetTempPath(), "kvdb-pintier-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data, CpuBudgetBytes = 64L << 20 });
            using var client = new KvDbClient(server.Address);
            Model model = await client.CreateModelAsync(TestModels.Small("pintier"));
            Context created = await client.CreateContextAsync(model.Name, id: "t");
            Assert.Equal((false, PinTier.Unspecified), (created.Pinned, created.PinTier));
            await EndToEndTests.Load(client, model, "t", 64);

            Context disk = await client.PinContextAsync("t", PinTier.Disk);
            Assert.Equal((true, PinTier.Disk), (disk.Pinned, disk.PinTier));
            Context cpu = await client.UpdateContextAsync("t", pinned: true);
            Assert.Equal((true, PinTier.Cpu), (cpu.Pinned, cpu.PinTier));
            Assert.Equal(PinTier.Cpu, (await client.GetContextAsync("t")).PinTier);

            // No GPU tier here: a GPU pin is refused and changes nothing; a tier with pinned = false is invalid.
            var gpu = await Assert.ThrowsAsync<RpcException>(() => client.PinContextAsync("t", PinTier.Gpu));
            Assert.Equal(StatusCode.FailedPrecondition, gpu.StatusCode);
            Assert.Equal(PinTier.Cpu, (await client.GetContextAsync("t")).PinTier);
            var bad = await Assert.ThrowsAsync<RpcException>(async () => await client.Contexts.UpdateContextAsync(new UpdateContextRequest { Id = "t", Pinned = false, PinTier = PinTier.Disk }));
            Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);

            Context unpinned = await client.UpdateContextAsync("t", pinned: false);
            Assert.Equal((false, PinTier.Unspecified), (unpinned.Pinned, unpinned.PinTier));
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}

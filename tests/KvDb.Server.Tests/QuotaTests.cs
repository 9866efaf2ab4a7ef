using Google.Rpc;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>Tenants' quotas on a real server: every quota refuses with RESOURCE_EXHAUSTED and a QuotaFailure, nothing acknowledged is lost, quotas and usage survive a restart.</summary>
public sealed class QuotaTests : IAsyncLifetime
{
    private const string AdminKey = "quota-admin-key";
    private KeyedServer? _server;

    public async Task InitializeAsync() => _server = await KeyedServer.StartAsync(AdminKey);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Contexts_quota_refuses_the_next_context_with_a_quota_failure()
    {
        (KvDbClient admin, KvDbClient tenant) = await TenantAsync("qc", new Quota { Contexts = 2 });
        using (admin)
        using (tenant)
        {
            Model model = await tenant.CreateModelAsync(TestModels.Small("quota-contexts"));
            await tenant.CreateContextAsync(model.Name, id: "a");
            await tenant.ForkContextAsync("a", "b");
            RpcException e = await Assert.ThrowsAsync<RpcException>(() => tenant.CreateContextAsync(model.Name, id: "c"));
            AssertQuotaFailure(e, "qc", "contexts");
            Assert.Equal(StatusCode.ResourceExhausted, (await Assert.ThrowsAsync<RpcException>(() => tenant.ForkContextAsync("a", "d"))).StatusCode);
            Assert.Equal(2, (await tenant.ListContextsAsync()).Contexts.Count);

            await tenant.DeleteContextAsync("b");
            await tenant.CreateContextAsync(model.Name, id: "c");
        }
    }

    [Fact]
    public async Task Concurrent_appends_racing_for_the_last_bytes_never_exceed_the_quota_and_lose_nothing_acknowledged()
    {
        Model model = TestModels.Small("quota-bytes");
        const int tokens = 64;
        long perContext = (long)tokens * model.NumLayers * 2 * model.NumKvHeads * model.HeadDim * sizeof(float);
        (KvDbClient admin, KvDbClient tenant) = await TenantAsync("qb", new Quota { Bytes = 3 * perContext });
        using (admin)
        using (tenant)
        {
            await tenant.CreateModelAsync(model);
            const int racers = 6;
            for (int i = 0; i < racers; i++)
            {
                await tenant.CreateContextAsync(model.Name, id: $"r{i}");
            }

            Task[] appends = Enumerable.Range(0, racers).Select(i => Task.Run(() => EndToEndTests.Load(tenant, model, $"r{i}", tokens))).ToArray();
            int acknowledged = 0;
            foreach (Task t in appends)
            {
                try
                {
                    await t;
                    acknowledged++;
                }
                catch (RpcException e)
                {
                    AssertQuotaFailure(e, "qb", "bytes");
                }
            }

            Assert.InRange(acknowledged, 1, 3);
            long stored = 0;
            int full = 0;
            for (int i = 0; i < racers; i++)
            {
                Context c = await tenant.GetContextAsync($"r{i}");
                Assert.True(c.NumTokens is 0 or tokens, $"r{i} holds {c.NumTokens} tokens: an append is all or nothing");
                full += c.NumTokens == tokens ? 1 : 0;
                stored += c.Bytes;
            }

            Assert.Equal(acknowledged, full);
            Assert.True(stored <= 3 * perContext, $"{stored} bytes stored over a quota of {3 * perContext}");
            Tenant listed = (await admin.Tenants.ListTenantsAsync(new ListTenantsRequest())).Tenants.Single(t => t.Name == "qb");
            Assert.Equal(stored, listed.Usage.Bytes);
            TenantUsage usage = (await admin.GetStatsAsync()).Tenants.Single(t => t.Tenant == "qb");
            Assert.Equal((stored, 3 * perContext, (long)racers), (usage.Bytes, usage.QuotaBytes, usage.Contexts));

            // Restart: quota and usage are back, and the acknowledged data reads back whole.
            await _server!.RestartAsync();
            using var again = new KvDbClient(_server.Address, AdminKey);
            Tenant after = (await again.Tenants.ListTenantsAsync(new ListTenantsRequest())).Tenants.Single(t => t.Name == "qb");
            Assert.Equal(3 * perContext, after.Quota.Bytes);
            Assert.Equal(stored, after.Usage.Bytes);
        }
    }

    [Fact]
    public async Task Streams_quota_refuses_a_second_open_stream()
    {
        (KvDbClient admin, KvDbClient tenant) = await TenantAsync("qs", new Quota { Streams = 1 });
        using (admin)
        using (tenant)
        {
            Model model = await tenant.CreateModelAsync(TestModels.Small("quota-streams"));
            await tenant.CreateContextAsync(model.Name, id: "s");

            // An append stream left open holds the tenant's one stream (the server has seen its first message).
            using (KvAppendStream first = tenant.OpenAppend("s"))
            {
                var ids = new int[4];
                await first.WriteAsync(0, ids, new byte[4 * model.NumKvHeads * model.HeadDim * 4], new byte[4 * model.NumKvHeads * model.HeadDim * 4], KvDType.F32, model.NumKvHeads, model.HeadDim);
                await Task.Delay(300);
                using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> second = tenant.Attention.AttendStream();
                RpcException e = await Assert.ThrowsAsync<RpcException>(async () =>
                {
                    await second.RequestStream.CompleteAsync();
                    await second.ResponseStream.MoveNext();
                });
                AssertQuotaFailure(e, "qs", "streams");
            }

            // Once it is closed, another stream may open.
            await Task.Delay(300);
            await EndToEndTests.Load(tenant, model, "s", 8);
            Assert.Equal(8, (await tenant.GetContextAsync("s")).NumTokens);
        }
    }

    [Fact]
    public async Task Requests_per_second_quota_refuses_a_burst_beyond_the_bucket()
    {
        (KvDbClient admin, KvDbClient tenant) = await TenantAsync("qr", new Quota { RequestsPerSecond = 2 });
        using (admin)
        using (tenant)
        {
            int refused = 0;
            for (int i = 0; i < 6; i++)
            {
                try
                {
                    await tenant.ListContextsAsync();
                }
                catch (RpcException e)
                {
                    AssertQuotaFailure(e, "qr", "requests_per_second");
                    refused++;
                }
            }

            Assert.InRange(refused, 3, 4);
            await Task.Delay(1100);
            Assert.NotNull(await tenant.ListContextsAsync());
        }
    }

    [Fact]
    public async Task Cpu_share_is_stored_reported_with_resident_usage_and_survives_a_restart()
    {
        Model model = TestModels.Small("quota-cpu");
        const int tokens = 64;
        (KvDbClient admin, KvDbClient tenant) = await TenantAsync("qcpu", new Quota { CpuBytes = 1 << 20 });
        using (admin)
        using (tenant)
        {
            await tenant.CreateModelAsync(model);
            await tenant.CreateContextAsync(model.Name, id: "c");
            await EndToEndTests.Load(tenant, model, "c", tokens);
            long stored = (await tenant.GetContextAsync("c")).Bytes;

            // Well under the server's CPU budget, every block of the tenant is resident.
            Tenant listed = (await admin.Tenants.ListTenantsAsync(new ListTenantsRequest())).Tenants.Single(t => t.Name == "qcpu");
            Assert.Equal(1 << 20, listed.Quota.CpuBytes);
            Assert.Equal((stored, stored), (listed.Usage.Bytes, listed.Usage.CpuBytes));
            TenantUsage usage = (await admin.GetStatsAsync()).Tenants.Single(t => t.Tenant == "qcpu");
            Assert.Equal((stored, 1L << 20), (usage.CpuBytes, usage.QuotaCpuBytes));

            // Evicting the CPU tier moves the full blocks to disk: the resident figure follows, the stored one does not.
            await admin.Admin.EvictAsync(new EvictRequest { TargetCpuBytes = 0 });
            Tenant evicted = (await admin.Tenants.ListTenantsAsync(new ListTenantsRequest())).Tenants.Single(t => t.Name == "qcpu");
            Assert.Equal(stored, evicted.Usage.Bytes);
            Assert.True(evicted.Usage.CpuBytes < stored, $"{evicted.Usage.CpuBytes} of {stored} bytes still resident after eviction");

            RpcException bad = await Assert.ThrowsAsync<RpcException>(() => admin.Tenants.SetQuotaAsync(new SetQuotaRequest { Tenant = "qcpu", Quota = new Quota { CpuBytes = -1 } }).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);

            await _server!.RestartAsync();
            using var again = new KvDbClient(_server.Address, AdminKey);
            Tenant after = (await again.Tenants.ListTenantsAsync(new ListTenantsRequest())).Tenants.Single(t => t.Name == "qcpu");
            Assert.Equal((1L << 20, stored), (after.Quota.CpuBytes, after.Usage.Bytes));
        }
    }

    private static void AssertQuotaFailure(RpcException e, string tenant, string quota)
    {
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        Google.Rpc.Status? status = e.GetRpcStatus();
        Assert.NotNull(status);
        QuotaFailure failure = Assert.IsType<QuotaFailure>(status!.GetDetail<QuotaFailure>());
        QuotaFailure.Types.Violation v = Assert.Single(failure.Violations);
        Assert.Equal("tenant:" + tenant, v.Subject);
        Assert.StartsWith($"quota {quota} of tenant {tenant}: limit ", v.Description, StringComparison.Ordinal);
    }

    private async Task<(KvDbClient Admin, KvDbClient Tenant)> TenantAsync(string name, Quota quota)
    {
        var admin = new KvDbClient(_server!.Address, AdminKey);
        string key = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = name })).ApiKey;
        await admin.Tenants.SetQuotaAsync(new SetQuotaRequest { Tenant = name, Quota = quota });
        return (admin, new KvDbClient(_server.Address, key));
    }

}

using Google.Rpc;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>
/// Without --data the CPU tier holds every stored byte, so a tenant's cpu_bytes quota bounds what it may store: an
/// append past it is refused with a QuotaFailure naming cpu_bytes, and what was acknowledged before stays.
/// </summary>
public sealed class MemoryOnlyQuotaTests : IAsyncLifetime
{
    private const string AdminKey = "memory-quota-admin";
    private KvDbServerHandle? _server;

    public async Task InitializeAsync() => _server = await KvDbServer.StartAsync(new KvDbServerOptions
    {
        Host = "127.0.0.1", Port = 0, AdminKey = AdminKey, CpuBudgetBytes = 128L << 20, CalibrateCosts = false,
    });

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Cpu_bytes_bounds_what_a_tenant_stores_on_a_memory_only_server()
    {
        Model model = TestModels.Small("memory-quota");
        const int tokens = 64;
        long perContext = (long)tokens * model.NumLayers * 2 * model.NumKvHeads * model.HeadDim * sizeof(float);
        using var admin = new KvDbClient(_server!.Address, AdminKey);
        string key = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "mq" })).ApiKey;
        await admin.Tenants.SetQuotaAsync(new SetQuotaRequest { Tenant = "mq", Quota = new Quota { CpuBytes = 2 * perContext, Bytes = 10 * perContext } });
        using var tenant = new KvDbClient(_server.Address, key);
        await tenant.CreateModelAsync(model);
        for (int i = 0; i < 3; i++)
        {
            await tenant.CreateContextAsync(model.Name, id: $"c{i}");
        }

        await EndToEndTests.Load(tenant, model, "c0", tokens);
        await EndToEndTests.Load(tenant, model, "c1", tokens);
        RpcException e = await Assert.ThrowsAsync<RpcException>(() => EndToEndTests.Load(tenant, model, "c2", tokens));
        Assert.Equal(StatusCode.ResourceExhausted, e.StatusCode);
        QuotaFailure failure = Assert.IsType<QuotaFailure>(e.GetRpcStatus()!.GetDetail<QuotaFailure>());
        Assert.StartsWith("quota cpu_bytes of tenant mq: limit ", Assert.Single(failure.Violations).Description, StringComparison.Ordinal);

        Assert.Equal(tokens, (await tenant.GetContextAsync("c0")).NumTokens);
        Assert.Equal(tokens, (await tenant.GetContextAsync("c1")).NumTokens);
        Assert.Equal(0, (await tenant.GetContextAsync("c2")).NumTokens);
        TenantUsage usage = (await admin.GetStatsAsync()).Tenants.Single(t => t.Tenant == "mq");
        Assert.Equal((2 * perContext, 2 * perContext), (usage.Bytes, usage.QuotaCpuBytes));
    }
}

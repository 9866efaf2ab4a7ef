using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// Suite "auth": what authentication costs an Attend. Two servers in one process, one open (no admin key) and one
/// with an admin key whose requests carry a tenant's key (so every call is authenticated and its context id scoped),
/// hold the same context (Llama-3-8B layer shape, bf16, --ctx tokens, default 32K); EXACT requests alternate between
/// them, so both see the same machine load. Reports both p50s and the overhead.
/// </summary>
internal static class AuthSuite
{
    public static async Task RunAsync(string[] args)
    {
        long ctx = SuiteOptions.Get(args, "ctx", 32 * 1024);
        int queries = (int)SuiteOptions.Get(args, "queries", 200);
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 8, NumQueryHeads = 32, HeadDim = 128, Seed = 4242 });
        var model = new Model { Name = "llama3-8b-layer", NumLayers = 1, NumQueryHeads = 32, NumKvHeads = 8, HeadDim = 128, Dtype = DType.Bf16 };
        const string adminKey = "bench-admin-key";

        await using KvDbServerHandle open = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false }).ConfigureAwait(false);
        await using KvDbServerHandle keyed = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, AdminKey = adminKey }).ConfigureAwait(false);
        using var openClient = new KvDbClient(open.Address);
        string tenantKey;
        using (var admin = new KvDbClient(keyed.Address, adminKey))
        {
            tenantKey = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "bench" }).ConfigureAwait(false)).ApiKey;
        }

        using var tenantClient = new KvDbClient(keyed.Address, tenantKey);
        var clients = new[] { openClient, tenantClient };
        var ids = new string[2];
        for (int s = 0; s < 2; s++)
        {
            await clients[s].CreateModelAsync(model).ConfigureAwait(false);
            ids[s] = await new QueryContext(workload, ctx).LoadAsync(clients[s], "auth").ConfigureAwait(false);
        }

        await PairedAttend.RunAsync("auth", "open", "keyed", clients, ids, workload, ctx, queries).ConfigureAwait(false);
    }
}

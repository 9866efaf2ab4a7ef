using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;

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
        await PairedAttend.RunAsync(args, "auth", "open", "keyed", [openClient, tenantClient]).ConfigureAwait(false);
    }
}

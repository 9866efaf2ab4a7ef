using System.CommandLine;
using KvDb.Protocol.V1;

namespace KvDb.Cli;

/// <summary>
/// <c>kvdb tenant …</c>: tenant administration against a running server, with the admin key from KVDB_ADMIN_KEY.
/// <c>create</c> and <c>rotate-key</c> print the new key as the last line (shown once: the server keeps only a hash).
/// </summary>
internal sealed class TenantCommand : Command
{
    private readonly ServerConnection _connection = new("KVDB_ADMIN_KEY");

    public TenantCommand()
        : base("tenant", "Manage tenants on a running server with the admin key from KVDB_ADMIN_KEY.")
    {
        _connection.AddTo(this);
        Subcommands.Add(CreateCommand());
        Subcommands.Add(ListCommand());
        Subcommands.Add(RotateKeyCommand());
        Subcommands.Add(RevokeKeyCommand());
        Subcommands.Add(SetQuotaCommand());
        Subcommands.Add(GrantCommand("grant", "Let the tenant use a shared namespace (@NAME).", revoke: false));
        Subcommands.Add(GrantCommand("revoke-grant", "Take a shared namespace back from the tenant.", revoke: true));
        Subcommands.Add(DeleteCommand());
    }

    private static Argument<string> TenantName() => new("NAME") { Description = "the tenant's name" };

    private Command CreateCommand()
    {
        Argument<string> name = TenantName();
        var admin = new Option<bool>("--admin") { Description = "an admin tenant: its keys are admin keys" };
        var command = new Command("create", "Create a tenant and its first key; the key is the last line printed (shown once).") { name, admin };
        _connection.SetAction(command, async (parse, client) =>
        {
            CreateTenantResponse r = await client.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = parse.GetValue(name)!, Admin = parse.GetValue(admin) });
            Console.WriteLine($"tenant {r.Tenant.Name} created{(r.Tenant.Admin ? " (admin)" : string.Empty)}, key id {r.Tenant.Keys[0].KeyId}; its key (shown once):");
            Console.WriteLine(r.ApiKey);
            return 0;
        });
        return command;
    }

    private Command ListCommand()
    {
        var command = new Command("list", "List the tenants with their keys and usage.");
        _connection.SetAction(command, async (_, client) =>
        {
            ListTenantsResponse r = await client.Tenants.ListTenantsAsync(new ListTenantsRequest());
            foreach (Tenant t in r.Tenants)
            {
                int active = t.Keys.Count(k => k.RevokedUnixMs == 0);
                string ids = string.Join(", ", t.Keys.Select(k => k.RevokedUnixMs == 0 ? k.KeyId : k.KeyId + " (revoked)"));
                Console.WriteLine($"{t.Name}{(t.Admin ? " [admin]" : string.Empty)}: {active} active key(s): {ids}; usage {t.Usage.Bytes} bytes, {t.Usage.Contexts} contexts");
            }

            Console.WriteLine($"{r.Tenants.Count} tenant(s)");
            return 0;
        });
        return command;
    }

    private Command RotateKeyCommand()
    {
        Argument<string> name = TenantName();
        var command = new Command("rotate-key", "Give the tenant a new key (the old ones keep working until revoked); the key is the last line printed (shown once).") { name };
        _connection.SetAction(command, async (parse, client) =>
        {
            CreateApiKeyResponse r = await client.Tenants.CreateApiKeyAsync(new CreateApiKeyRequest { Tenant = parse.GetValue(name)! });
            Console.WriteLine($"new key id {r.Key.KeyId}; move clients to it, then `kvdb tenant revoke-key OLD_KEY_ID`. The key (shown once):");
            Console.WriteLine(r.ApiKey);
            return 0;
        });
        return command;
    }

    private Command RevokeKeyCommand()
    {
        var keyId = new Argument<string>("KEY_ID") { Description = "the key's id (`kvdb tenant list` shows them)" };
        var command = new Command("revoke-key", "Revoke a key: calls with it are refused from now on.") { keyId };
        _connection.SetAction(command, async (parse, client) =>
        {
            string id = parse.GetValue(keyId)!;
            await client.Tenants.RevokeApiKeyAsync(new RevokeApiKeyRequest { KeyId = id });
            Console.WriteLine($"key {id} revoked");
            return 0;
        });
        return command;
    }

    private Command SetQuotaCommand()
    {
        Argument<string> name = TenantName();
        Option<long> bytes = NumberOptions.NonNegative("--bytes", "bytes of K/V the tenant may store; 0 = unlimited", 0L);
        Option<long> cpuBytes = NumberOptions.NonNegative("--cpu-bytes", "the tenant's CPU-tier share in bytes: when the tier must make room, tenants above their share go to disk first; 0 = no guarantee", 0L);
        Option<long> contexts = NumberOptions.NonNegative("--contexts", "contexts the tenant may hold; 0 = unlimited", 0L);
        Option<int> streams = NumberOptions.NonNegative("--streams", "concurrent streams (AppendKv, AttendStream, ReadKv) the tenant may have open; 0 = unlimited", 0);
        Option<double> rps = NumberOptions.Real("--rps", "requests per second the tenant may make; 0 = unlimited", 0, allowZero: true);
        var command = new Command("set-quota", "Set the tenant's quota (each limit 0 = unlimited; an option left out is set to 0).") { name, bytes, cpuBytes, contexts, streams, rps };
        _connection.SetAction(command, async (parse, client) =>
        {
            var quota = new Quota
            {
                Bytes = parse.GetValue(bytes),
                Contexts = parse.GetValue(contexts),
                Streams = parse.GetValue(streams),
                RequestsPerSecond = parse.GetValue(rps),
                CpuBytes = parse.GetValue(cpuBytes),
            };
            Tenant t = await client.Tenants.SetQuotaAsync(new SetQuotaRequest { Tenant = parse.GetValue(name)!, Quota = quota });
            Console.WriteLine($"tenant {t.Name}: quota bytes {t.Quota.Bytes}, contexts {t.Quota.Contexts}, streams {t.Quota.Streams}, rps {t.Quota.RequestsPerSecond} (0 = unlimited), cpu share {t.Quota.CpuBytes} bytes (0 = none); usage bytes {t.Usage.Bytes} ({t.Usage.CpuBytes} in the CPU tier), contexts {t.Usage.Contexts}");
            return 0;
        });
        return command;
    }

    private Command GrantCommand(string verb, string description, bool revoke)
    {
        Argument<string> name = TenantName();
        var ns = new Argument<string>("@SHARED") { Description = "the shared namespace, with its @" };
        var command = new Command(verb, description) { name, ns };
        _connection.SetAction(command, async (parse, client) =>
        {
            Tenant t = await client.Tenants.GrantAsync(new GrantRequest { Tenant = parse.GetValue(name)!, Namespace = parse.GetValue(ns)!, Revoke = revoke });
            Console.WriteLine($"tenant {t.Name}: shared namespaces {(t.Grants.Count == 0 ? "(none)" : string.Join(", ", t.Grants))}");
            return 0;
        });
        return command;
    }

    private Command DeleteCommand()
    {
        Argument<string> name = TenantName();
        var command = new Command("delete", "Delete the tenant: its keys stop working, then its contexts are deleted.") { name };
        _connection.SetAction(command, async (parse, client) =>
        {
            string tenant = parse.GetValue(name)!;
            await client.Tenants.DeleteTenantAsync(new DeleteTenantRequest { Name = tenant });
            Console.WriteLine($"tenant {tenant} deleted, with its keys and contexts");
            return 0;
        });
        return command;
    }
}

using KvDb.Protocol.V1;

namespace KvDb.Cli;

/// <summary><c>kvdb tenant …</c>: tenant administration against a running server, with the admin key from KVDB_ADMIN_KEY.</summary>
internal static class TenantCommand
{
    public static async Task<int> RunAsync(CliOptions options)
    {
        List<string> words = options.Positional;
        if (words.Count == 0)
        {
            throw new ArgumentException("kvdb tenant needs a subcommand: create NAME [--admin], list, rotate-key NAME, revoke-key KEY_ID, set-quota NAME [--bytes N] [--cpu-bytes N] [--contexts N] [--streams N] [--rps X], grant NAME @NS, revoke-grant NAME @NS, delete NAME");
        }

        return await RemoteCommand.RunAsync(options, Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY"), async client =>
        {
            switch (words[0])
            {
                case "create":
                    {
                        CreateTenantResponse r = await client.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = Argument(words, "NAME"), Admin = options.Has("admin") });
                        Console.WriteLine($"tenant {r.Tenant.Name} created{(r.Tenant.Admin ? " (admin)" : string.Empty)}, key id {r.Tenant.Keys[0].KeyId}; its key (shown once):");
                        Console.WriteLine(r.ApiKey);
                        return 0;
                    }

                case "list":
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
                    }

                case "rotate-key":
                    {
                        CreateApiKeyResponse r = await client.Tenants.CreateApiKeyAsync(new CreateApiKeyRequest { Tenant = Argument(words, "NAME") });
                        Console.WriteLine($"new key id {r.Key.KeyId}; move clients to it, then `kvdb tenant revoke-key OLD_KEY_ID`. The key (shown once):");
                        Console.WriteLine(r.ApiKey);
                        return 0;
                    }

                case "set-quota":
                    {
                        var quota = new Quota
                        {
                            Bytes = options.GetLong("bytes", 0),
                            Contexts = options.GetLong("contexts", 0),
                            Streams = options.GetInt("streams", 0),
                            RequestsPerSecond = options.GetOrNull("rps") is null ? 0 : options.GetDouble("rps", 0),
                            CpuBytes = options.GetLong("cpu-bytes", 0),
                        };
                        Tenant t = await client.Tenants.SetQuotaAsync(new SetQuotaRequest { Tenant = Argument(words, "NAME"), Quota = quota });
                        Console.WriteLine($"tenant {t.Name}: quota bytes {t.Quota.Bytes}, contexts {t.Quota.Contexts}, streams {t.Quota.Streams}, rps {t.Quota.RequestsPerSecond} (0 = unlimited), cpu share {t.Quota.CpuBytes} bytes (0 = none); usage bytes {t.Usage.Bytes} ({t.Usage.CpuBytes} in the CPU tier), contexts {t.Usage.Contexts}");
                        return 0;
                    }

                case "grant":
                case "revoke-grant":
                    {
                        string ns = words.Count >= 3 ? words[2] : throw new ArgumentException($"kvdb tenant {words[0]} needs NAME @NAMESPACE");
                        Tenant t = await client.Tenants.GrantAsync(new GrantRequest { Tenant = Argument(words, "NAME"), Namespace = ns, Revoke = words[0] == "revoke-grant" });
                        Console.WriteLine($"tenant {t.Name}: shared namespaces {(t.Grants.Count == 0 ? "(none)" : string.Join(", ", t.Grants))}");
                        return 0;
                    }

                case "revoke-key":
                    await client.Tenants.RevokeApiKeyAsync(new RevokeApiKeyRequest { KeyId = Argument(words, "KEY_ID") });
                    Console.WriteLine($"key {words[1]} revoked");
                    return 0;

                case "delete":
                    await client.Tenants.DeleteTenantAsync(new DeleteTenantRequest { Name = Argument(words, "NAME") });
                    Console.WriteLine($"tenant {words[1]} deleted, with its keys and contexts");
                    return 0;

                default:
                    throw new ArgumentException($"unknown tenant subcommand \"{words[0]}\"; use create, list, rotate-key, revoke-key, set-quota, grant, revoke-grant or delete");
            }
        }).ConfigureAwait(false);
    }

    private static string Argument(List<string> words, string what) =>
        words.Count >= 2 ? words[1] : throw new ArgumentException($"kvdb tenant {words[0]} needs {what}");
}

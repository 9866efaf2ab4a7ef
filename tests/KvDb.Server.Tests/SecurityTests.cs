using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server.Security;

namespace KvDb.Server.Tests;

/// <summary>
/// Tenants and keys end to end on a real server with an admin key: who may call what (the matrix of
/// docs/security.md), isolation of contexts and prefix namespaces, revocation and rotation, restart, the open
/// server's loopback rule, and malformed authorization values.
/// </summary>
public sealed class SecurityTests : IAsyncLifetime
{
    private const string AdminKey = "test-admin-key-0123456789";
    private readonly Xunit.Abstractions.ITestOutputHelper _output;
    private KeyedServer? _server;

    public SecurityTests(Xunit.Abstractions.ITestOutputHelper output)
    {
        _output = output;
    }

    private string Address => _server!.Address;

    public async Task InitializeAsync() => _server = await KeyedServer.StartAsync(AdminKey);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Every_rpc_answers_each_caller_with_the_documented_status()
    {
        using var admin = new KvDbClient(Address, AdminKey);
        string ownerKey = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "owner" })).ApiKey;
        string otherKey = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "other" })).ApiKey;
        CreateTenantResponse revoked = await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "revoked" });
        await admin.Tenants.RevokeApiKeyAsync(new RevokeApiKeyRequest { KeyId = revoked.Tenant.Keys[0].KeyId });

        using var owner = new KvDbClient(Address, ownerKey);
        Model model = await owner.CreateModelAsync(TestModels.Small("sec-matrix"));
        await owner.CreateContextAsync(model.Name, id: "doc");
        await EndToEndTests.Load(owner, model, "doc", 64);

        // Callers: no key, a wrong key, a revoked key, another tenant, the owner, the admin key.
        var callers = new (string Name, string? Key)[]
        {
            ("none", null), ("wrong", "kvdb.000000000000.not-a-secret"), ("revoked", revoked.ApiKey), ("other", otherKey), ("owner", ownerKey), ("admin", AdminKey),
        };

        // The owner's context is "doc"; the admin key is the global scope, where the owner's context is "owner:doc".
        const StatusCode U = StatusCode.Unauthenticated, N = StatusCode.NotFound, D = StatusCode.PermissionDenied, K = StatusCode.OK;
        var expected = new List<(string Rpc, StatusCode[] Statuses, Func<KvDbClient, string, Task> Call)>();
        float[] q = TestModels.Workload(model, 64, 0).Queries(1, 1);
        int[] prefix = new int[16];
        int n = 0;
        string Own(string caller, string id) => caller == "admin" ? "owner:" + id : id;
        async Task<string> OwnerContext(string caller)
        {
            // A fresh context of the owner for calls that consume one (delete, append).
            string id = $"t{n++}";
            await owner.CreateContextAsync(model.Name, id: id);
            return Own(caller, id);
        }

        //                                   none wrong revoked other owner admin
        expected.Add(("Models.CreateModel", [U, U, U, K, K, K], (c, _) => c.CreateModelAsync(TestModels.Small("sec-matrix"))));
        expected.Add(("Models.GetModel", [U, U, U, K, K, K], (c, _) => c.Models.GetModelAsync(new GetModelRequest { Name = model.Name }).ResponseAsync));
        expected.Add(("Models.ListModels", [U, U, U, K, K, K], (c, _) => c.Models.ListModelsAsync(new ListModelsRequest()).ResponseAsync));
        expected.Add(("Contexts.CreateContext", [U, U, U, K, K, K], (c, _) => c.CreateContextAsync(model.Name, id: $"new{n++}")));
        expected.Add(("Contexts.GetContext", [U, U, U, N, K, K], (c, who) => c.GetContextAsync(Own(who, "doc"))));
        expected.Add(("Contexts.DeleteContext", [U, U, U, N, K, K], async (c, who) => await c.DeleteContextAsync(await OwnerContext(who))));
        expected.Add(("Contexts.AppendKv", [U, U, U, N, K, K], async (c, who) => await EndToEndTests.Load(c, model, await OwnerContext(who), 16)));
        expected.Add(("Contexts.LookupPrefix", [U, U, U, K, K, K], (c, _) => c.LookupPrefixAsync(model.Name, "", prefix)));
        expected.Add(("Contexts.ForkContext", [U, U, U, N, K, K], (c, who) => c.ForkContextAsync(Own(who, "doc"), Own(who, $"fork{n++}"))));
        expected.Add(("Contexts.ListContexts", [U, U, U, K, K, K], (c, _) => c.ListContextsAsync()));
        expected.Add(("Contexts.ReadKv", [U, U, U, N, K, K], (c, who) => c.ReadLayerAsync(Own(who, "doc"), 0)));
        expected.Add(("Contexts.UpdateContext", [U, U, U, N, K, K], (c, who) => c.UpdateContextAsync(Own(who, "doc"), ttlSeconds: 0)));
        expected.Add(("Contexts.UpdateContext (pin)", [U, U, U, N, D, K], (c, who) => c.UpdateContextAsync(Own(who, "doc"), pinned: false)));
        expected.Add(("Attention.Attend", [U, U, U, N, K, K], (c, who) => c.AttendAsync(Own(who, "doc"), 0, q, 1, model.NumQueryHeads, model.HeadDim)));
        expected.Add(("Attention.Explain", [U, U, U, N, K, K], (c, who) => c.ExplainAsync(Own(who, "doc"), 0, q, 1, model.NumQueryHeads, model.HeadDim)));
        expected.Add(("Attention.AttendStream", [U, U, U, N, K, K], async (c, who) =>
        {
            using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = c.Attention.AttendStream();
            await call.RequestStream.WriteAsync(KvDbClient.BuildAttend(Own(who, "doc"), 0, q, 1, model.NumQueryHeads, model.HeadDim));
            await call.RequestStream.CompleteAsync();
            while (await call.ResponseStream.MoveNext())
            {
            }
        }));
        expected.Add(("Admin.GetStats", [U, U, U, D, D, K], (c, _) => c.GetStatsAsync()));
        expected.Add(("Admin.Evict", [U, U, U, D, D, K], (c, _) => c.EvictAsync(long.MaxValue)));
        expected.Add(("Admin.Checkpoint", [U, U, U, D, D, K], (c, _) => c.CheckpointAsync()));
        expected.Add(("Admin.Compact", [U, U, U, D, D, K], (c, _) => c.CompactAsync()));
        expected.Add(("Admin.ReadAudit", [U, U, U, D, D, K], (c, _) => c.Admin.ReadAuditAsync(new ReadAuditRequest()).ResponseAsync));
        expected.Add(("Tenants.ListTenants", [U, U, U, D, D, K], (c, _) => c.Tenants.ListTenantsAsync(new ListTenantsRequest()).ResponseAsync));
        expected.Add(("Tenants.CreateApiKey", [U, U, U, D, D, K], (c, _) => c.Tenants.CreateApiKeyAsync(new CreateApiKeyRequest { Tenant = "other" }).ResponseAsync));

        var table = new System.Text.StringBuilder();
        foreach ((string rpc, StatusCode[] statuses, Func<KvDbClient, string, Task> call) in expected)
        {
            table.Append(rpc);
            for (int c = 0; c < callers.Length; c++)
            {
                using var client = new KvDbClient(Address, callers[c].Key);
                StatusCode got = await StatusOf(() => call(client, callers[c].Name));
                table.Append(' ').Append(got);
                Assert.True(statuses[c] == got, $"{rpc} as {callers[c].Name}: expected {statuses[c]}, got {got}");
            }

            table.AppendLine();
        }

        _output.WriteLine(table.ToString());

        // Another tenant never sees the owner's contexts, the owner sees its own under the ids it gave.
        using var other = new KvDbClient(Address, otherKey);
        ListContextsResponse others = await other.ListContextsAsync();
        Assert.Single(others.Contexts);
        Assert.StartsWith("new", others.Contexts[0].Id, StringComparison.Ordinal);
        ListContextsResponse own = await owner.ListContextsAsync();
        Assert.Contains(own.Contexts, c => c.Id == "doc");
        Assert.All(own.Contexts, c => Assert.DoesNotContain(':', c.Id));
        Assert.Contains((await admin.ListContextsAsync()).Contexts, c => c.Id == "owner:doc");
    }

    [Fact]
    public async Task Another_tenants_context_answers_exactly_as_one_that_does_not_exist()
    {
        using var admin = new KvDbClient(Address, AdminKey);
        using var a = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "ta" })).ApiKey);
        using var b = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "tb" })).ApiKey);
        Model model = await a.CreateModelAsync(TestModels.Small("sec-iso"));
        await a.CreateContextAsync(model.Name, id: "secret");
        await EndToEndTests.Load(a, model, "secret", 48);

        RpcException fromOther = await Assert.ThrowsAsync<RpcException>(() => b.GetContextAsync("secret"));
        RpcException missing = await Assert.ThrowsAsync<RpcException>(() => b.GetContextAsync("never-made"));
        Assert.Equal(StatusCode.NotFound, fromOther.StatusCode);
        Assert.Equal(missing.Status.Detail.Replace("never-made", "secret", StringComparison.Ordinal), fromOther.Status.Detail);
        Assert.DoesNotContain("ta:", fromOther.Status.Detail, StringComparison.Ordinal);

        // Deleting by the same id from the other tenant does nothing to the owner's data.
        await Assert.ThrowsAsync<RpcException>(() => b.DeleteContextAsync("secret"));
        Assert.Equal(48, (await a.GetContextAsync("secret")).NumTokens);

        // Both tenants may use the same id: two contexts.
        await b.CreateContextAsync(model.Name, id: "secret");
        Assert.Equal(0, (await b.GetContextAsync("secret")).NumTokens);
        Assert.Equal(48, (await a.GetContextAsync("secret")).NumTokens);

        // Prefix chains are salted per tenant: the same tokens in the same (empty) namespace do not meet.
        int[] ids = new int[48];
        TestModels.Workload(model, 48, 0).FillTokenIds(0, ids);
        Assert.True(await a.LookupPrefixAsync(model.Name, "", ids) > 0);
        Assert.Equal(0, await b.LookupPrefixAsync(model.Name, "", ids));

        // ':' would name another tenant's ids: refused.
        RpcException colon = await Assert.ThrowsAsync<RpcException>(() => b.GetContextAsync("ta:secret"));
        Assert.Equal(StatusCode.InvalidArgument, colon.StatusCode);
    }

    [Fact]
    public async Task A_shared_namespace_serves_the_tenants_granted_it_and_refuses_the_others()
    {
        using var admin = new KvDbClient(Address, AdminKey);
        using var a = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "sa" })).ApiKey);
        using var b = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "sb" })).ApiKey);
        using var c = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "sc" })).ApiKey);
        await admin.Tenants.GrantAsync(new GrantRequest { Tenant = "sa", Namespace = "@docs" });
        Tenant sb = await admin.Tenants.GrantAsync(new GrantRequest { Tenant = "sb", Namespace = "@docs" });
        Assert.Equal(["@docs"], sb.Grants);

        Model model = await a.CreateModelAsync(TestModels.Small("sec-shared"));
        const int tokens = 64;
        Context stored = await a.CreateContextAsync(model.Name, ns: "@docs", id: "system-prompt");
        Assert.Equal("@docs", stored.Namespace);
        await EndToEndTests.Load(a, model, "system-prompt", tokens);
        int[] ids = new int[tokens];
        TestModels.Workload(model, tokens, 0).FillTokenIds(0, ids);

        // b (granted) finds and reuses a's prefix; in its own namespace it does not.
        Assert.Equal(tokens, await b.LookupPrefixAsync(model.Name, "@docs", ids));
        Assert.Equal(0, await b.LookupPrefixAsync(model.Name, "", ids));
        Context reused = await b.CreateContextAsync(model.Name, "@docs", "mine", ids);
        Assert.Equal(tokens, reused.NumTokens);

        // c (not granted) is refused, and cannot name a's context either.
        Assert.Equal(StatusCode.PermissionDenied, await StatusOf(() => c.LookupPrefixAsync(model.Name, "@docs", ids)));
        Assert.Equal(StatusCode.PermissionDenied, await StatusOf(() => c.CreateContextAsync(model.Name, ns: "@docs", id: "x")));
        Assert.Equal(StatusCode.NotFound, await StatusOf(() => c.GetContextAsync("system-prompt")));

        // Taking the grant away closes the namespace to b; b's context stays its own.
        await admin.Tenants.GrantAsync(new GrantRequest { Tenant = "sb", Namespace = "@docs", Revoke = true });
        Assert.Equal(StatusCode.PermissionDenied, await StatusOf(() => b.LookupPrefixAsync(model.Name, "@docs", ids)));
        Assert.Equal(tokens, (await b.GetContextAsync("mine")).NumTokens);
        Assert.Equal(StatusCode.InvalidArgument, await StatusOf(() => admin.Tenants.GrantAsync(new GrantRequest { Tenant = "sb", Namespace = "docs" }).ResponseAsync));
    }

    [Fact]
    public async Task Rotated_key_works_before_the_old_one_is_revoked_and_tenants_survive_a_restart()
    {
        using (var admin = new KvDbClient(Address, AdminKey))
        {
            CreateTenantResponse t = await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "rot" });
            using var oldClient = new KvDbClient(Address, t.ApiKey);
            Model model = await oldClient.CreateModelAsync(TestModels.Small("sec-rot"));
            await oldClient.CreateContextAsync(model.Name, id: "kept");
            await EndToEndTests.Load(oldClient, model, "kept", 32);

            string newKey = (await admin.Tenants.CreateApiKeyAsync(new CreateApiKeyRequest { Tenant = "rot" })).ApiKey;
            using var newClient = new KvDbClient(Address, newKey);
            Assert.Equal(32, (await newClient.GetContextAsync("kept")).NumTokens);
            Assert.Equal(32, (await oldClient.GetContextAsync("kept")).NumTokens);
            await admin.Tenants.RevokeApiKeyAsync(new RevokeApiKeyRequest { KeyId = t.Tenant.Keys[0].KeyId });
            Assert.Equal(StatusCode.Unauthenticated, await StatusOf(() => oldClient.GetContextAsync("kept")));

            await _server!.RestartAsync();

            using var afterRestart = new KvDbClient(Address, newKey);
            Assert.Equal(32, (await afterRestart.GetContextAsync("kept")).NumTokens);
            using var oldAfterRestart = new KvDbClient(Address, t.ApiKey);
            Assert.Equal(StatusCode.Unauthenticated, await StatusOf(() => oldAfterRestart.GetContextAsync("kept")));
        }

        using var admin2 = new KvDbClient(Address, AdminKey);
        Tenant rot = Assert.Single((await admin2.Tenants.ListTenantsAsync(new ListTenantsRequest())).Tenants, x => x.Name == "rot");
        Assert.Equal(2, rot.Keys.Count);
        Assert.Equal(1, rot.Keys.Count(k => k.RevokedUnixMs != 0));
        Assert.DoesNotContain(File.ReadAllText(Path.Combine(_server!.DataDirectory, TenantRegistry.FileName)), "kvdb.", StringComparison.Ordinal);
    }

    [Fact]
    public async Task Deleting_a_tenant_stops_its_keys_and_deletes_its_contexts()
    {
        using var admin = new KvDbClient(Address, AdminKey);
        string key = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "gone" })).ApiKey;
        using var tenant = new KvDbClient(Address, key);
        Model model = await tenant.CreateModelAsync(TestModels.Small("sec-gone"));
        await tenant.CreateContextAsync(model.Name, id: "c");
        await admin.Tenants.DeleteTenantAsync(new DeleteTenantRequest { Name = "gone" });
        Assert.Equal(StatusCode.Unauthenticated, await StatusOf(() => tenant.GetContextAsync("c")));
        Assert.Equal(StatusCode.NotFound, await StatusOf(() => admin.GetContextAsync("gone:c")));
    }

    [Fact]
    public async Task Content_another_tenant_holds_is_stored_again_and_answers_like_new_content()
    {
        // Decision (docs/security.md): blocks are not deduplicated across tenants, because each tenant's namespaces are
        // salted by the server. So nothing a tenant can observe (dedupe counters, lookups, append latency) depends on
        // what another tenant stored. Checked structurally (no dedupe hit, lookup 0) and by timing with a loose rule:
        // the medians of appends of held vs fresh content must be within a factor 1.5 of each other.
        using var admin = new KvDbClient(Address, AdminKey);
        using var holder = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "holder" })).ApiKey);
        using var prober = new KvDbClient(Address, (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "prober" })).ApiKey);
        Model model = await holder.CreateModelAsync(TestModels.Small("sec-dedupe"));
        const int tokens = 128;
        await holder.CreateContextAsync(model.Name, id: "held");
        await EndToEndTests.Load(holder, model, "held", tokens);
        long dedupeBefore = (await admin.GetStatsAsync()).DedupeHits;

        int[] heldIds = new int[tokens];
        TestModels.Workload(model, tokens, 0).FillTokenIds(0, heldIds);
        int[] freshIds = heldIds.Select(t => t + 1).ToArray();
        Assert.Equal(0, await prober.LookupPrefixAsync(model.Name, "", heldIds));
        Assert.Equal(0, await prober.LookupPrefixAsync(model.Name, "", freshIds));

        // Lookups: tokens another tenant holds vs tokens nobody holds, alternating; both answer 0.
        const int lookups = 64;
        var heldLookup = new double[lookups];
        var freshLookup = new double[lookups];
        for (int i = 0; i < lookups; i++)
        {
            var t = System.Diagnostics.Stopwatch.StartNew();
            Assert.Equal(0, await prober.LookupPrefixAsync(model.Name, "", heldIds));
            heldLookup[i] = t.Elapsed.TotalMicroseconds;
            t.Restart();
            Assert.Equal(0, await prober.LookupPrefixAsync(model.Name, "", freshIds));
            freshLookup[i] = t.Elapsed.TotalMicroseconds;
        }

        Array.Sort(heldLookup);
        Array.Sort(freshLookup);
        double lookupRatio = heldLookup[lookups / 2] / freshLookup[lookups / 2];
        _output.WriteLine($"lookup µs p10/p50/p90: held {heldLookup[lookups / 10]:F0}/{heldLookup[lookups / 2]:F0}/{heldLookup[lookups * 9 / 10]:F0}, fresh {freshLookup[lookups / 10]:F0}/{freshLookup[lookups / 2]:F0}/{freshLookup[lookups * 9 / 10]:F0}; median ratio {lookupRatio:F3}");
        Assert.True(lookupRatio is > 1 / 1.5 and < 1.5, $"lookup medians: held {heldLookup[lookups / 2]:F0} µs, fresh {freshLookup[lookups / 2]:F0} µs");

        const int rounds = 16;
        var held = new double[rounds];
        var fresh = new double[rounds];
        for (int i = 0; i < rounds; i++)
        {
            await prober.CreateContextAsync(model.Name, id: $"h{i}");
            await prober.CreateContextAsync(model.Name, id: $"f{i}");
            var t = System.Diagnostics.Stopwatch.StartNew();
            await EndToEndTests.Load(prober, model, $"h{i}", tokens);
            held[i] = t.Elapsed.TotalMicroseconds;
            t.Restart();
            await LoadShifted(prober, model, $"f{i}", tokens);
            fresh[i] = t.Elapsed.TotalMicroseconds;
        }

        Assert.Equal(dedupeBefore, (await admin.GetStatsAsync()).DedupeHits - ((rounds - 1) * (tokens / model.BlockSize) * model.NumLayers * 2));
        Array.Sort(held);
        Array.Sort(fresh);
        double ratio = held[rounds / 2] / fresh[rounds / 2];
        _output.WriteLine($"append of {tokens} tokens x {model.NumLayers} layers, µs sorted; content another tenant holds: {string.Join(' ', held.Select(x => x.ToString("F0")))}");
        _output.WriteLine($"fresh content: {string.Join(' ', fresh.Select(x => x.ToString("F0")))}; median ratio {ratio:F3}");
        Assert.True(ratio is > 1 / 1.5 and < 1.5, $"append medians: held {held[rounds / 2]:F0} µs, fresh {fresh[rounds / 2]:F0} µs");
    }

    /// <summary>The same shape of data as <see cref="EndToEndTests.Load"/> with token ids no tenant has stored.</summary>
    private static async Task LoadShifted(KvDbClient client, Model model, string contextId, int tokens)
    {
        KvDType kd = TestModels.Kernel(model.Dtype);
        var ids = new int[tokens];
        TestModels.Workload(model, tokens, 0).FillTokenIds(0, ids);
        for (int i = 0; i < tokens; i++)
        {
            ids[i]++;
        }

        using KvAppendStream stream = client.OpenAppend(contextId);
        for (int layer = 0; layer < model.NumLayers; layer++)
        {
            KvDb.Workload.SyntheticWorkload w = TestModels.Workload(model, tokens, layer);
            await stream.WriteLayerAsync(layer, ids, w.KeyBytes(kd, 0, tokens), w.ValueBytes(kd, 0, tokens), kd, model.NumKvHeads, model.HeadDim, chunkTokens: 37);
        }

        await stream.CompleteAsync();
    }

    [Fact]
    public async Task Malformed_authorization_values_are_unauthenticated_never_accepted()
    {
        await _server!.RestartAsync(Authenticator.FailuresPerWindow);
        var rng = new Random(12345);
        const string printable = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
        var values = new List<string>
        {
            "", "Bearer", "Bearer ", "bearer " + AdminKey + "x", "Basic " + AdminKey, "Bearer kvdb.", "Bearer kvdb.0123456789ab.", "Bearer kvdb.0123456789ab",
            "Bearer " + new string('A', 8000), "Bearer kvdb." + new string('f', 12) + "." + new string('x', 43), AdminKey,
        };
        for (int i = 0; i < 30; i++)
        {
            int n = rng.Next(1, 300);
            var chars = new char[n];
            for (int j = 0; j < n; j++)
            {
                chars[j] = printable[rng.Next(printable.Length)];
            }

            values.Add((i % 2 == 0 ? "Bearer " : string.Empty) + new string(chars).Trim());
        }

        int unauthenticated = 0;
        int throttled = 0;
        foreach (string value in values)
        {
            using var client = new KvDbClient(Address);
            var headers = new Metadata { { "authorization", value } };
            StatusCode got = await StatusOf(() => client.Contexts.ListContextsAsync(new ListContextsRequest(), headers).ResponseAsync);
            Assert.True(got is StatusCode.Unauthenticated or StatusCode.ResourceExhausted, $"authorization \"{value[..Math.Min(40, value.Length)]}\" got {got}");
            unauthenticated += got == StatusCode.Unauthenticated ? 1 : 0;
            throttled += got == StatusCode.ResourceExhausted ? 1 : 0;
        }

        // The peer is slowed down after its budget of failures, and binary metadata does not count as a key.
        Assert.Equal(Authenticator.FailuresPerWindow, unauthenticated);
        Assert.Equal(values.Count - Authenticator.FailuresPerWindow, throttled);
    }

    [Fact]
    public async Task Admin_actions_and_failed_authentications_are_audited_durably()
    {
        using var admin = new KvDbClient(Address, AdminKey);
        CreateTenantResponse t = await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "audited" });
        await admin.Tenants.RevokeApiKeyAsync(new RevokeApiKeyRequest { KeyId = t.Tenant.Keys[0].KeyId });
        await admin.CheckpointAsync();
        using var anonymous = new KvDbClient(Address);
        await StatusOf(() => anonymous.ListContextsAsync());
        using var revokedClient = new KvDbClient(Address, t.ApiKey);
        await StatusOf(() => revokedClient.GetStatsAsync());
        string tenantKey = (await admin.Tenants.CreateTenantAsync(new CreateTenantRequest { Name = "nosy" })).ApiKey;
        using var nosy = new KvDbClient(Address, tenantKey);
        await StatusOf(() => nosy.Tenants.ListTenantsAsync(new ListTenantsRequest()).ResponseAsync);
        await StatusOf(() => admin.Tenants.DeleteTenantAsync(new DeleteTenantRequest { Name = "no-such-tenant" }).ResponseAsync);

        await _server!.RestartAsync();
        using var again = new KvDbClient(Address, AdminKey);
        ReadAuditResponse audit = await again.Admin.ReadAuditAsync(new ReadAuditRequest());
        var rows = audit.Entries.Select(e => (e.Actor, e.Action, e.Outcome)).ToList();
        Assert.Contains(("admin-key", "/kvdb.v1.Tenants/CreateTenant", "OK"), rows);
        Assert.Contains(("admin-key", "/kvdb.v1.Tenants/RevokeApiKey", "OK"), rows);
        Assert.Contains(("admin-key", "/kvdb.v1.Admin/Checkpoint", "OK"), rows);
        Assert.Contains(("unauthenticated", "/kvdb.v1.Contexts/ListContexts", "Unauthenticated"), rows);
        Assert.Contains(("unauthenticated", "/kvdb.v1.Admin/GetStats", "Unauthenticated"), rows);
        Assert.Contains(("tenant:nosy", "/kvdb.v1.Tenants/ListTenants", "PermissionDenied"), rows);
        Assert.Contains(("admin-key", "/kvdb.v1.Tenants/DeleteTenant", "NotFound"), rows);
        Assert.Contains(audit.Entries, e => e.Target.Contains("audited", StringComparison.Ordinal));
        Assert.Equal(audit.Entries.Select(e => e.Sequence).Order(), audit.Entries.Select(e => e.Sequence));
        Assert.All(audit.Entries, e => Assert.NotEmpty(e.Peer));

        // Reading after the last sequence returns nothing new; no key's secret is ever written.
        Assert.Empty((await again.Admin.ReadAuditAsync(new ReadAuditRequest { AfterSequence = audit.Entries[^1].Sequence })).Entries);
        string file = File.ReadAllText(Path.Combine(_server!.DataDirectory, AuditLog.FileName));
        Assert.DoesNotContain(t.ApiKey.Split('.')[2], file, StringComparison.Ordinal);
        Assert.DoesNotContain(AdminKey, file, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Binary_authorization_metadata_is_not_a_key()
    {
        using var client = new KvDbClient(Address);
        var headers = new Metadata { { "authorization-bin", System.Text.Encoding.UTF8.GetBytes("Bearer " + AdminKey) } };
        Assert.Equal(StatusCode.Unauthenticated, await StatusOf(() => client.Contexts.ListContextsAsync(new ListContextsRequest(), headers).ResponseAsync));
    }

    [Fact]
    public async Task An_open_server_listens_on_loopback_only_unless_insecure()
    {
        await Assert.ThrowsAsync<InvalidOperationException>(() => KvDbServer.StartAsync(new KvDbServerOptions { Host = "0.0.0.0", Port = 0, CalibrateCosts = false }));
        await using (KvDbServerHandle insecure = await KvDbServer.StartAsync(new KvDbServerOptions { Host = "0.0.0.0", Port = 0, Insecure = true, CalibrateCosts = false }))
        {
            using var client = new KvDbClient(insecure.Address);
            Assert.NotNull(await client.ListContextsAsync());
        }

        await using KvDbServerHandle keyed = await KvDbServer.StartAsync(new KvDbServerOptions { Host = "0.0.0.0", Port = 0, AdminKey = AdminKey, CalibrateCosts = false });
        using var anonymous = new KvDbClient(keyed.Address);
        Assert.Equal(StatusCode.Unauthenticated, await StatusOf(() => anonymous.ListContextsAsync()));
        Assert.True(KvDbServer.IsLoopback("127.0.0.1") && KvDbServer.IsLoopback("::1") && KvDbServer.IsLoopback("localhost"));
        Assert.False(KvDbServer.IsLoopback("0.0.0.0"));
    }


    private static async Task<StatusCode> StatusOf(Func<Task> call)
    {
        try
        {
            await call();
            return StatusCode.OK;
        }
        catch (RpcException e)
        {
            return e.StatusCode;
        }
    }
}

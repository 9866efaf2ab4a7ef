namespace KvDb.Cli.Tests;

/// <summary>Runs the real kvdb entry point in-process.</summary>
[Collection("console")]
public sealed class CliTests
{
    [Fact]
    public async Task Demo_loads_a_context_answers_queries_and_matches_the_reference()
    {
        (int code, string output) = await Run("demo", "--tokens", "2048", "--layers", "2", "--queries", "2");
        Assert.Equal(0, code);
        Assert.Contains("listening on http://127.0.0.1:", output, StringComparison.Ordinal);
        Assert.Contains("append    2048 tokens × 2 layers", output, StringComparison.Ordinal);
        Assert.Contains("  query 1  EXACT", output, StringComparison.Ordinal);

        // 2048 tokens are too few for sampling to pay: AUTO answers exactly, and says so.
        Assert.Contains("AUTO chose exact", output, StringComparison.Ordinal);
        Assert.DoesNotContain("FAILED", output, StringComparison.Ordinal);
        Assert.Contains("result    OK", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_commands_and_bad_options_exit_non_zero_with_a_message()
    {
        CliRun run = await CliRun.RunAsync("frobnicate");
        Assert.Equal((2, true), (run.Code, run.Error.Length > 0));

        run = await CliRun.RunAsync("demo", "--tokens", "many");
        Assert.Equal((2, true), (run.Code, run.Error.Length > 0));

        run = await CliRun.RunAsync("--help");
        Assert.Equal(0, run.Code);
        Assert.Contains("serve", run.Output.Split(' ', '\n'));
    }

    [Fact]
    public async Task Tenant_create_prints_a_working_key_as_its_last_line_and_list_and_revoke_work()
    {
        const string adminKey = "cli-test-admin-key";
        await using KvDb.Server.KvDbServerHandle server = await KvDb.Server.KvDbServer.StartAsync(new KvDb.Server.KvDbServerOptions { Port = 0, AdminKey = adminKey, CalibrateCosts = false });
        string? previous = Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY");
        Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", adminKey);
        try
        {
            (int code, string output) = await Run("tenant", "create", "acme", "--server", server.Address);
            Assert.Equal(0, code);
            string key = output.TrimEnd().Split('\n')[^1].Trim();
            using (var client = new KvDb.Client.KvDbClient(server.Address, key))
            {
                Assert.Empty((await client.ListContextsAsync()).Contexts);
            }

            (code, output) = await Run("tenant", "set-quota", "acme", "--contexts", "3", "--server", server.Address);
            Assert.Equal(0, code);
            (code, output) = await Run("tenant", "grant", "acme", "@docs", "--server", server.Address);
            Assert.Equal(0, code);
            (code, output) = await Run("tenant", "list", "--server", server.Address);
            Assert.Equal(0, code);
            Assert.Contains("acme: 1 active key(s)", output, StringComparison.Ordinal);

            string keyId = key.Split('.')[1];
            (code, _) = await Run("tenant", "revoke-key", keyId, "--server", server.Address);
            Assert.Equal(0, code);
            using (var revoked = new KvDb.Client.KvDbClient(server.Address, key))
            {
                var e = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => revoked.ListContextsAsync());
                Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, e.StatusCode);
            }

            // Without the admin key the command reports the server's refusal and exits 1.
            Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", null);
            (code, output) = await Run("tenant", "list", "--server", server.Address);
            Assert.Equal(1, code);
            Assert.Contains("Unauthenticated", output, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", previous);
        }
    }

    [Fact]
    public async Task Admin_commands_print_tables_and_json_that_match_the_server()
    {
        const string adminKey = "cli-admin-commands-key";
        string data = Path.Combine(Path.GetTempPath(), "kvdb-cli-admin-" + Guid.NewGuid().ToString("N"));
        string? previous = Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY");
        try
        {
            await using KvDb.Server.KvDbServerHandle server = await KvDb.Server.KvDbServer.StartAsync(new KvDb.Server.KvDbServerOptions { Port = 0, AdminKey = adminKey, CalibrateCosts = false, DataDirectory = data });
            using (var client = new KvDb.Client.KvDbClient(server.Address, adminKey))
            {
                var model = new KvDb.Protocol.V1.Model { Name = "cli-m", NumLayers = 1, NumQueryHeads = 2, NumKvHeads = 1, HeadDim = 8, Dtype = KvDb.Protocol.V1.DType.F32, BlockSize = 16 };
                await client.CreateModelAsync(model);
                await client.CreateContextAsync(model.Name, "docs", "cli-ctx");
                using KvDb.Client.KvAppendStream append = client.OpenAppend("cli-ctx");
                await append.WriteLayerAsync(0, new int[64], new byte[64 * 8 * 4], new byte[64 * 8 * 4], KvDb.Core.KvDType.F32, 1, 8, chunkTokens: 64);
                await append.CompleteAsync();
            }

            Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", adminKey);
            (int code, string output) = await Run("stats", "--json", "--server", server.Address);
            Assert.Equal(0, code);
            using (var stats = System.Text.Json.JsonDocument.Parse(output))
            {
                Assert.Equal((1, 1, true), (stats.RootElement.GetProperty("models").GetInt32(), stats.RootElement.GetProperty("contexts").GetInt32(), stats.RootElement.GetProperty("durable").GetBoolean()));
            }

            (code, output) = await Run("contexts", "--namespace", "docs", "--server", server.Address);
            Assert.Equal(0, code);
            string row = Assert.Single(output.Split('\n'), l => l.StartsWith("cli-ctx", StringComparison.Ordinal));
            Assert.Contains("64", row, StringComparison.Ordinal);
            (code, output) = await Run("contexts", "--namespace", "other", "--json", "--server", server.Address);
            Assert.Equal(0, code);
            using (var none = System.Text.Json.JsonDocument.Parse(output))
            {
                Assert.Equal(0, none.RootElement.GetProperty("contexts").GetArrayLength());
            }

            (code, output) = await Run("evict", "--target", "0", "--json", "--server", server.Address);
            Assert.Equal(0, code);
            using (var evicted = System.Text.Json.JsonDocument.Parse(output))
            {
                Assert.Equal("4", evicted.RootElement.GetProperty("blocks").GetString()); // 64 tokens = 4 full blocks; int64 is a JSON string
            }

            (code, output) = await Run("checkpoint", "--json", "--server", server.Address);
            Assert.Equal(0, code);
            using (var checkpoint = System.Text.Json.JsonDocument.Parse(output))
            {
                Assert.Equal("1", checkpoint.RootElement.GetProperty("contexts").GetString());
            }

            // The context's creation, 4 stored and 4 demoted events so far; resume from the start and stop after 9.
            (code, output) = await Run("events", "--after", "0", "--count", "9", "--json", "--server", server.Address);
            Assert.Equal(0, code);
            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(9, lines.Length);
            string[] kinds = [.. lines.Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("kind").GetString()!)];
            Assert.Equal(["context_created", "stored", "stored", "stored", "stored", "demoted", "demoted", "demoted", "demoted"], kinds);
        }
        finally
        {
            Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", previous);
            if (Directory.Exists(data))
            {
                Directory.Delete(data, recursive: true);
            }
        }
    }

    [Fact]
    public async Task Serve_refuses_a_non_loopback_host_without_an_admin_key()
    {
        string? previous = Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY");
        Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", null);
        try
        {
            (int code, string output) = await Run("serve", "--host", "0.0.0.0", "--port", "0");
            Assert.Equal(2, code);
            Assert.Contains("--insecure", output, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable("KVDB_ADMIN_KEY", previous);
        }
    }

    /// <summary>Runs kvdb with <paramref name="args"/>: its exit code, and stdout followed by stderr.</summary>
    private static async Task<(int Code, string Output)> Run(params string[] args)
    {
        CliRun run = await CliRun.RunAsync(args);
        return (run.Code, run.Output + run.Error);
    }
}

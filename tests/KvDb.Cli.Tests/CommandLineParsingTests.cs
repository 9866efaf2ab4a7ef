using System.CommandLine;
using KvDb.Server;
using Microsoft.Extensions.Logging;

namespace KvDb.Cli.Tests;

/// <summary>What the command line parses into: the values each command's action receives.</summary>
[Collection("console")]
public sealed class CommandLineParsingTests
{
    [Fact]
    public void Serve_options_map_to_the_server_options()
    {
        using var adminKey = new EnvironmentVariable("KVDB_ADMIN_KEY", " env-admin-key ");
        (ServeCommand serve, ParseResult parse) = ParseServe(
            "serve", "--host", "0.0.0.0", "--port", "6000", "--data", "/var/lib/kvdb", "--cpu-budget", "1073741824", "--gpu-budget", "536870912",
            "--checkpoint-log-bytes", "4096", "--http-port", "-1", "--insecure", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem",
            "--log-format", "json", "--log-level", "Debug");
        KvDbServerOptions o = serve.ServerOptions(parse);
        Assert.Equal(
            ("0.0.0.0", 6000, "/var/lib/kvdb", 1L << 30, 1L << 29, 4096L, -1, "env-admin-key", true),
            (o.Host, o.Port, o.DataDirectory, o.CpuBudgetBytes, o.GpuBudgetBytes, o.CheckpointLogBytes, o.HttpPort, o.AdminKey, o.Insecure));
        Assert.Equal(("c.pem", "k.pem", "ca.pem", "json", LogLevel.Debug), (o.TlsCertificatePath, o.TlsKeyPath, o.TlsClientCaPath, o.LogFormat, o.LogLevel));
    }

    [Fact]
    public void Serve_maps_the_eviction_policy_and_the_pin_quota()
    {
        (ServeCommand serve, ParseResult parse) = ParseServe("serve", "--eviction-policy", "tinylfu", "--pin-quota", "0.25");
        KvDbServerOptions o = serve.ServerOptions(parse);
        Assert.Equal((KvDb.Store.EvictionPolicy.TinyLfu, 0.25), (o.EvictionPolicy, o.MaxPinnedFraction));
        (serve, parse) = ParseServe("serve");
        o = serve.ServerOptions(parse);
        Assert.Equal((KvDb.Store.EvictionPolicy.Lru, 0.5), (o.EvictionPolicy, o.MaxPinnedFraction));
    }

    [Fact]
    public void Serve_maps_the_admission_limits()
    {
        (ServeCommand serve, ParseResult parse) = ParseServe("serve", "--max-attends", "6", "--max-appends", "3");
        KvDbServerOptions o = serve.ServerOptions(parse);
        Assert.Equal((6, 3), (o.MaxConcurrentAttends, o.MaxConcurrentAppends));
        (serve, parse) = ParseServe("serve");
        o = serve.ServerOptions(parse);
        Assert.Equal((0, 0), (o.MaxConcurrentAttends, o.MaxConcurrentAppends));
    }

    [Fact]
    public void Serve_defaults_are_the_documented_ones()
    {
        using var adminKey = new EnvironmentVariable("KVDB_ADMIN_KEY", null);
        (ServeCommand serve, ParseResult parse) = ParseServe("serve");
        KvDbServerOptions o = serve.ServerOptions(parse);
        Assert.Equal(
            ("127.0.0.1", KvDbServerOptions.DefaultPort, (string?)null, 0L, 0L, 0L, KvDbServerOptions.DefaultHttpPort, (string?)null, false),
            (o.Host, o.Port, o.DataDirectory, o.CpuBudgetBytes, o.GpuBudgetBytes, o.CheckpointLogBytes, o.HttpPort, o.AdminKey, o.Insecure));
        Assert.Equal(((string?)null, "text", LogLevel.Warning), (o.TlsCertificatePath, o.LogFormat, o.LogLevel));
        Assert.True(o.IsOpen);
    }

    [Fact]
    public void Serve_reads_the_admin_key_from_the_first_line_of_the_key_file_before_the_environment()
    {
        using var adminKey = new EnvironmentVariable("KVDB_ADMIN_KEY", "env-admin-key");
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(file, ["  file-admin-key  ", "second line"]);
            (ServeCommand serve, ParseResult parse) = ParseServe("serve", "--admin-key-file=" + file, "--port=0");
            KvDbServerOptions o = serve.ServerOptions(parse);
            Assert.Equal(("file-admin-key", 0), (o.AdminKey, o.Port));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Serve_with_an_empty_admin_key_file_is_a_usage_error()
    {
        string file = Path.GetTempFileName();
        try
        {
            CliRun run = await CliRun.RunAsync("serve", "--admin-key-file", file, "--port", "0");
            Assert.Equal(CliApp.UsageError, run.Code);
            Assert.NotEmpty(run.Error);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Tenant_set_quota_parses_its_name_limits_and_connection()
    {
        ParseResult parse = ParseClean("tenant", "set-quota", "acme", "--bytes", "1000", "--cpu-bytes", "500", "--contexts", "3", "--streams", "2", "--rps", "1.5", "--server", "http://10.0.0.1:50051", "--ca-file", "ca.pem");
        Assert.Equal("set-quota", parse.CommandResult.Command.Name);
        Assert.Equal(
            ("acme", 1000L, 500L, 3L, 2, 1.5, "http://10.0.0.1:50051", "ca.pem"),
            (parse.GetValue<string>("NAME"), parse.GetValue<long>("--bytes"), parse.GetValue<long>("--cpu-bytes"), parse.GetValue<long>("--contexts"), parse.GetValue<int>("--streams"), parse.GetValue<double>("--rps"), parse.GetValue<string>("--server"), parse.GetValue<string?>("--ca-file")));

        // Left out: 0 = unlimited, and the default server. --rps 0 is allowed (unlimited).
        parse = ParseClean("tenant", "set-quota", "acme", "--rps", "0");
        Assert.Equal(
            (0L, 0L, 0L, 0, 0.0, "http://127.0.0.1:50051", (string?)null),
            (parse.GetValue<long>("--bytes"), parse.GetValue<long>("--cpu-bytes"), parse.GetValue<long>("--contexts"), parse.GetValue<int>("--streams"), parse.GetValue<double>("--rps"), parse.GetValue<string>("--server"), parse.GetValue<string?>("--ca-file")));
    }

    [Fact]
    public void Tenant_connection_options_may_come_before_the_subcommand_and_switches_anywhere()
    {
        ParseResult parse = ParseClean("tenant", "--server", "http://h:1", "create", "--admin", "acme");
        Assert.Equal(("create", "acme", true, "http://h:1"), (parse.CommandResult.Command.Name, parse.GetValue<string>("NAME"), parse.GetValue<bool>("--admin"), parse.GetValue<string>("--server")));

        parse = ParseClean("tenant", "create", "acme");
        Assert.False(parse.GetValue<bool>("--admin"));
    }

    [Fact]
    public void A_shared_namespace_is_an_argument_not_a_response_file()
    {
        ParseResult parse = ParseClean("tenant", "grant", "acme", "@docs");
        Assert.Equal(("grant", "acme", "@docs"), (parse.CommandResult.Command.Name, parse.GetValue<string>("NAME"), parse.GetValue<string>("@SHARED")));
        parse = ParseClean("tenant", "revoke-grant", "acme", "@docs");
        Assert.Equal(("revoke-grant", "@docs"), (parse.CommandResult.Command.Name, parse.GetValue<string>("@SHARED")));
    }

    [Theory]
    [InlineData("rotate-key", "NAME", "acme")]
    [InlineData("delete", "NAME", "acme")]
    [InlineData("revoke-key", "KEY_ID", "0123abcd")]
    public void Tenant_subcommands_take_their_argument(string verb, string argument, string value)
    {
        ParseResult parse = ParseClean("tenant", verb, value);
        Assert.Equal((verb, value), (parse.CommandResult.Command.Name, parse.GetValue<string>(argument)));
    }

    [Fact]
    public void Context_subcommands_parse_the_id_and_the_ttl()
    {
        ParseResult parse = ParseClean("context", "ttl", "ctx-1", "3600", "--server", "https://h:443");
        Assert.Equal(("ttl", "ctx-1", 3600L, "https://h:443"), (parse.CommandResult.Command.Name, parse.GetValue<string>("ID"), parse.GetValue<long>("SECONDS"), parse.GetValue<string>("--server")));
        parse = ParseClean("context", "pin", "ctx-1");
        Assert.Equal(("pin", "ctx-1"), (parse.CommandResult.Command.Name, parse.GetValue<string>("ID")));
        Assert.Equal("cpu", parse.GetValue<string>("--tier"));
        parse = ParseClean("context", "pin", "ctx-1", "--tier", "gpu");
        Assert.Equal(("pin", "ctx-1", "gpu"), (parse.CommandResult.Command.Name, parse.GetValue<string>("ID"), parse.GetValue<string>("--tier")));
        parse = ParseClean("context", "unpin", "ctx-1");
        Assert.Equal(("unpin", "ctx-1"), (parse.CommandResult.Command.Name, parse.GetValue<string>("ID")));
    }

    [Fact]
    public void Admin_commands_parse_their_options_and_defaults()
    {
        ParseResult parse = ParseClean("contexts", "--namespace", "docs", "--limit", "7", "--json");
        Assert.Equal(("docs", 7, true), (parse.GetValue<string?>("--namespace"), parse.GetValue<int>("--limit"), parse.GetValue<bool>("--json")));
        parse = ParseClean("contexts");
        Assert.Equal(((string?)null, 100, false), (parse.GetValue<string?>("--namespace"), parse.GetValue<int>("--limit"), parse.GetValue<bool>("--json")));

        parse = ParseClean("evict", "--target", "1048576");
        Assert.Equal(1L << 20, parse.GetValue<long>("--target"));
        Assert.Equal(0L, ParseClean("evict").GetValue<long>("--target"));

        parse = ParseClean("events", "--after", "0", "--count", "9");
        Assert.Equal((0L, 9L), (parse.GetValue<long>("--after"), parse.GetValue<long>("--count")));
        Assert.Equal(0L, ParseClean("events").GetValue<long>("--count"));

        foreach (string command in (string[])["stats", "contexts", "evict", "checkpoint", "events"])
        {
            parse = ParseClean(command, "--json", "--server", "http://h:2");
            Assert.Equal((command, true, "http://h:2"), (parse.CommandResult.Command.Name, parse.GetValue<bool>("--json"), parse.GetValue<string>("--server")));
        }
    }

    [Fact]
    public void Events_tells_a_given_after_from_the_default()
    {
        ParseResult given = ParseClean("events", "--after", "0");
        ParseResult absent = ParseClean("events");
        var after = (Option<long>)given.CommandResult.Command.Options.Single(o => o.Name == "--after");
        Assert.True(given.WasGiven(after));
        Assert.False(absent.WasGiven(after));
    }

    [Fact]
    public void Demo_parses_its_sizes_and_keeps_its_defaults()
    {
        ParseResult parse = ParseClean("demo", "--tokens", "2048", "--layers", "3", "--queries", "5", "--epsilon", "0.1");
        var demo = (DemoCommand)parse.CommandResult.Command;
        Assert.Equal((2048, 3, 5, 0.1), (parse.GetValue(demo.Tokens), parse.GetValue(demo.Layers), parse.GetValue(demo.Queries), parse.GetValue(demo.Epsilon)));

        parse = ParseClean("demo");
        demo = (DemoCommand)parse.CommandResult.Command;
        Assert.Equal((65536, 2, 4, 0.05), (parse.GetValue(demo.Tokens), parse.GetValue(demo.Layers), parse.GetValue(demo.Queries), parse.GetValue(demo.Epsilon)));
    }

    [Fact]
    public void Every_documented_command_exists()
    {
        RootCommand root = CliApp.CreateRootCommand();
        string[] names = [.. root.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).Order(StringComparer.Ordinal)];
        Assert.Equal(["checkpoint", "compact", "completion", "context", "contexts", "demo", "events", "evict", "serve", "stats", "tenant"], names);
        Assert.Equal(
            ["create", "delete", "grant", "list", "revoke-grant", "revoke-key", "rotate-key", "set-quota"],
            root.Subcommands.Single(c => c.Name == "tenant").Subcommands.Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["pin", "ttl", "unpin"], root.Subcommands.Single(c => c.Name == "context").Subcommands.Select(c => c.Name).Order(StringComparer.Ordinal));
    }

    private static (ServeCommand Serve, ParseResult Parse) ParseServe(params string[] args)
    {
        ParseResult parse = ParseClean(args);
        return ((ServeCommand)parse.CommandResult.Command, parse);
    }

    /// <summary>Parses and checks that the command line has no errors.</summary>
    private static ParseResult ParseClean(params string[] args)
    {
        ParseResult parse = CliApp.Parse(args);
        Assert.Empty(parse.Errors);
        return parse;
    }
}

using System.CommandLine;
using KvDb.Server;
using Microsoft.Extensions.Logging;

namespace KvDb.Cli;

/// <summary><c>kvdb serve</c>: runs the gRPC server (and its HTTP endpoint) until SIGINT/SIGTERM.</summary>
internal sealed class ServeCommand : Command
{
    /// <summary>The names <c>--log-level</c> accepts, least severe first (<see cref="LogLevel"/>'s, in lower case).</summary>
    private static readonly string[] LogLevelNames = [.. Enum.GetValues<LogLevel>().Select(l => l.ToString().ToLowerInvariant())];

    public ServeCommand()
        : base("serve", """
            Run the gRPC server (Models, Contexts, Attention, Admin, Tenants, health, reflection) until SIGINT/SIGTERM.
            With an admin key (KVDB_ADMIN_KEY, or the first line of --admin-key-file) every call needs a key; without one
            the server runs open and only on a loopback address (--insecure allows others).
            """)
    {
        LogFormat.AcceptOnlyFromAmong("text", "json");
        EvictionPolicy.AcceptOnlyFromAmong("lru", "tinylfu");
        PinQuota.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<double>() > 1)
            {
                result.AddError("--pin-quota must be a fraction from 0 to 1");
            }
        });
        LogLevelOption.CompletionSources.Clear(); // the enum's own names are capitalized; suggest the lower-case ones
        LogLevelOption.CompletionSources.Add(LogLevelNames);
        foreach (Option option in (Option[])[Host, Port, Data, CpuBudget, GpuBudget, CheckpointLogBytes, CompactDeadRatio, DiskReserve, HttpPort, AdminKeyFile, Insecure, TlsCert, TlsKey, TlsClientCa, EvictionPolicy, PinQuota, MaxAttends, MaxAppends, LogFormat, LogLevelOption])
        {
            Options.Add(option);
        }

        SetAction(parse => RunAsync(ServerOptions(parse)));
    }

    public Option<string> Host { get; } = new("--host")
    {
        Description = "address to bind (127.0.0.1, 0.0.0.0, localhost, an IPv6 literal); a non-loopback one needs an admin key or --insecure",
        HelpName = "ADDRESS",
        DefaultValueFactory = _ => "127.0.0.1",
    };

    public Option<int> Port { get; } = NumberOptions.Port("--port", "gRPC port; 0 picks a free one (printed at start)", KvDbServerOptions.DefaultPort);

    public Option<string?> Data { get; } = new("--data")
    {
        Description = "data directory: makes the server durable (write-ahead log, checkpoints, disk tier for cold blocks; restarting on it recovers every acknowledged append); without it, memory only",
        HelpName = "DIR",
    };

    public Option<long> CpuBudget { get; } = NumberOptions.NonNegative("--cpu-budget", "bytes of K/V the CPU tier may hold; 0 = half of the available memory", 0L, "BYTES");

    public Option<long> GpuBudget { get; } = NumberOptions.NonNegative("--gpu-budget", "bytes of GPU memory to mirror the blocks of queried layers into and run exact attention there (needs libkvdbcuda.so and a GPU; otherwise it says so and uses the CPU); 0 = off", 0L, "BYTES");

    public Option<long> DiskReserve { get; } = NumberOptions.NonNegative("--disk-reserve", "with --data: bytes kept free on the data directory's filesystem; appends, block copies and checkpoints that would go below are refused with RESOURCE_EXHAUSTED", 64L << 20, "BYTES");

    public Option<long> CheckpointLogBytes { get; } = NumberOptions.NonNegative("--checkpoint-log-bytes", "with --data: take a checkpoint after this many bytes of write-ahead log; 0 = the store's default (512 MiB)", 0L);

    public Option<double> CompactDeadRatio { get; } = NumberOptions.Real("--compact-dead-ratio", "with --data: compact the disk block log (give deleted blocks' space back) once this share of it is dead and at least 64 MiB; 0 = only on `kvdb compact`", 0.5, allowZero: true, "FRACTION");

    public Option<int> HttpPort { get; } = NumberOptions.Port("--http-port", "HTTP port of the dashboard (/), /metrics (Prometheus; the admin key as bearer when keys are on), /healthz and /readyz; 0 picks a free one, -1 turns it off", KvDbServerOptions.DefaultHttpPort, min: -1);

    public Option<string?> AdminKeyFile { get; } = new("--admin-key-file")
    {
        Description = "file whose first line is the admin key (instead of KVDB_ADMIN_KEY)",
        HelpName = "PATH",
    };

    public Option<bool> Insecure { get; } = new("--insecure")
    {
        Description = "allow an open server (no admin key) on a non-loopback address: anyone reaching the port can read and delete everything",
    };

    public Option<string?> TlsCert { get; } = new("--tls-cert") { Description = "PEM certificate (chain): with --tls-key, serve gRPC over TLS only", HelpName = "PEM" };

    public Option<string?> TlsKey { get; } = new("--tls-key") { Description = "PEM private key of --tls-cert", HelpName = "PEM" };

    public Option<string?> TlsClientCa { get; } = new("--tls-client-ca") { Description = "PEM CA certificate(s): with TLS, require client certificates issued by them (mTLS)", HelpName = "PEM" };

    public Option<string> EvictionPolicy { get; } = new("--eviction-policy")
    {
        Description = "which cold blocks leave the CPU tier first: lru (least recently used) or tinylfu (least frequently used among all but the most recent 1%, by a count-min sketch); GetStats and /metrics report hit ratios per policy",
        HelpName = "POLICY",
        DefaultValueFactory = _ => "lru",
    };

    public Option<double> PinQuota { get; } = NumberOptions.Real("--pin-quota", "share of the CPU tier (and of the GPU tier, for GPU pins) that pinned contexts may hold", 0.5, allowZero: true, "FRACTION");

    public Option<int> MaxAttends { get; } = NumberOptions.NonNegative("--max-attends", "Attend calls (and AttendStream messages) run at once; up to 4× as many wait (at most 1 s), more are refused with RESOURCE_EXHAUSTED and a google.rpc.RetryInfo hint; 0 = twice the cores, at least 4", 0);

    public Option<int> MaxAppends { get; } = NumberOptions.NonNegative("--max-appends", "AppendKv streams open at once; up to 4× as many wait (at most 1 s), more are refused with RESOURCE_EXHAUSTED and a retry hint; 0 = four times the cores, at least 8", 0);

    public Option<string> LogFormat { get; } = new("--log-format")
    {
        Description = "text (a line per entry) or json (one JSON object per line, for log shippers)",
        DefaultValueFactory = _ => "text",
    };

    public Option<LogLevel> LogLevelOption { get; } = new("--log-level")
    {
        Description = "least severe log entries written: trace, debug (a line per call: request id, method, status, latency), information, warning (slow calls over 1 s, quota refusals, corruption), error, critical or none",
        HelpName = "LEVEL",
        DefaultValueFactory = _ => LogLevel.Warning,
        CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
            int index = Array.IndexOf(LogLevelNames, text.ToLowerInvariant());
            if (index >= 0)
            {
                return Enum.GetValues<LogLevel>()[index];
            }

            result.AddError($"--log-level must be one of {string.Join(", ", LogLevelNames)}; got \"{text}\"");
            return LogLevel.Warning;
        },
    };

    /// <summary>The server's options from a parse of <c>kvdb serve …</c> (the admin key read from --admin-key-file or KVDB_ADMIN_KEY).</summary>
    public KvDbServerOptions ServerOptions(ParseResult parse) => new()
    {
        Host = parse.GetValue(Host)!,
        Port = parse.GetValue(Port),
        DataDirectory = parse.GetValue(Data),
        CpuBudgetBytes = parse.GetValue(CpuBudget),
        GpuBudgetBytes = parse.GetValue(GpuBudget),
        CheckpointLogBytes = parse.GetValue(CheckpointLogBytes),
        DiskReserveBytes = parse.GetValue(DiskReserve),
        CompactionDeadRatio = parse.GetValue(CompactDeadRatio),
        HttpPort = parse.GetValue(HttpPort),
        AdminKey = AdminKey(parse.GetValue(AdminKeyFile)),
        Insecure = parse.GetValue(Insecure),
        TlsCertificatePath = parse.GetValue(TlsCert),
        TlsKeyPath = parse.GetValue(TlsKey),
        TlsClientCaPath = parse.GetValue(TlsClientCa),
        LogFormat = parse.GetValue(LogFormat)!,
        LogLevel = parse.GetValue(LogLevelOption),
        EvictionPolicy = parse.GetValue(EvictionPolicy) == "tinylfu" ? Store.EvictionPolicy.TinyLfu : Store.EvictionPolicy.Lru,
        MaxPinnedFraction = parse.GetValue(PinQuota),
        MaxConcurrentAttends = parse.GetValue(MaxAttends),
        MaxConcurrentAppends = parse.GetValue(MaxAppends),
    };

    private static async Task<int> RunAsync(KvDbServerOptions serverOptions)
    {
        KvDbServerHandle server;
        try
        {
            server = await KvDbServer.StartAsync(serverOptions).ConfigureAwait(false);
        }
        catch (InvalidOperationException e)
        {
            return CliApp.Fail(e.Message);
        }

        await using KvDbServerHandle running = server;
        Console.WriteLine($"kvdb listening on {server.Address}");
        if (server.HttpAddress is not null)
        {
            Console.WriteLine($"kvdb dashboard on {server.HttpAddress}/ (metrics: /metrics, health: /healthz, /readyz)");
        }

        Console.WriteLine(serverOptions.IsOpen
            ? $"authentication: off (no admin key){(serverOptions.Insecure ? "; --insecure: anyone reaching the port can read and delete everything" : ", so loopback only")}; set KVDB_ADMIN_KEY to require keys"
            : "authentication: on (admin key set; tenants' keys via `kvdb tenant create`)");
        Console.WriteLine(serverOptions.DataDirectory is null
            ? "storage: memory only (pass --data DIR for a data directory)"
            : $"data directory: {serverOptions.DataDirectory}");
        if (server.Store is KvDb.Store.KvStore store)
        {
            Console.WriteLine(store.GpuTierStatus);
        }

        // The host's console lifetime turns SIGINT/SIGTERM into a graceful stop; wait for it.
        await server.WaitForShutdownAsync().ConfigureAwait(false);
        Console.WriteLine("kvdb stopped");
        return 0;
    }

    /// <summary>The admin key: the first line of --admin-key-file, else KVDB_ADMIN_KEY, else none (open).</summary>
    private static string? AdminKey(string? file)
    {
        if (file is not null)
        {
            string key = File.ReadLines(file).FirstOrDefault()?.Trim() ?? string.Empty;
            return key.Length > 0 ? key : throw new ArgumentException($"--admin-key-file {file} is empty; put the admin key on its first line");
        }

        return Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY") is { Length: > 0 } env ? env.Trim() : null;
    }
}

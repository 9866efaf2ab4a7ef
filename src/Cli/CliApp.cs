using KvDb.Server;

namespace KvDb.Cli;

/// <summary>The kvdb command line: a thin dispatcher over the server and client libraries.</summary>
internal static class CliApp
{
    private const string Usage = """
        kvdb — a database for LLM attention KV caches

        usage:
          kvdb serve [--host 127.0.0.1] [--port 50051] [--data DIR] [--cpu-budget BYTES] [--gpu-budget BYTES] [--checkpoint-log-bytes N]
                     [--http-port 50052] [--admin-key-file PATH] [--insecure] [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
                     [--log-format text|json] [--log-level warning]
              run the gRPC server (Models, Contexts, Attention, Admin, Tenants, health, reflection).
              With an admin key (KVDB_ADMIN_KEY, or the first line of --admin-key-file) every call needs a key;
              without one the server runs open and only on a loopback address (--insecure allows others).
              --tls-cert/--tls-key serve gRPC over TLS; --tls-client-ca also requires client certificates (mTLS).
              --http-port serves the dashboard at /, /metrics (Prometheus; admin key as bearer when keys are on), /healthz, /readyz.
              --log-format json writes one JSON object per log line; --log-level debug logs every call (request id,
              method, status, latency); warnings name slow calls (over 1 s), quota refusals and corruption.
              --data DIR makes it durable (write-ahead log, checkpoints, disk tier for cold blocks;
              restarting on the same DIR recovers every acknowledged append); without it, memory only.
              --gpu-budget BYTES mirrors the blocks of queried layers into that much GPU memory and runs
              exact attention there (needs libkvdbcuda.so and a GPU; otherwise it says so and uses the CPU)
          kvdb tenant create NAME [--admin] | list | rotate-key NAME | revoke-key KEY_ID | delete NAME
                     | set-quota NAME [--bytes N] [--cpu-bytes N] [--contexts N] [--streams N] [--rps X]   (0 = unlimited)
                     | grant NAME @SHARED | revoke-grant NAME @SHARED
                     [--server http://127.0.0.1:50051] [--ca-file PEM]
              manage tenants on a running server with the admin key from KVDB_ADMIN_KEY; create and
              rotate-key print the new key as the last line (shown once: the server keeps only a hash)
          kvdb context pin ID | unpin ID | ttl ID SECONDS   [--server http://127.0.0.1:50051] [--ca-file PEM]
              pin a context's blocks in the CPU tier (admin key), unpin, or set its TTL from now (0 = never
              expires), with the key from KVDB_API_KEY (or KVDB_ADMIN_KEY)
          kvdb stats | contexts [--namespace NS] [--limit 100] | evict [--target BYTES] | checkpoint
                     | events [--after SEQ] [--count N]          [--json] [--server URL] [--ca-file PEM]
              operate a running server (key from KVDB_ADMIN_KEY, or KVDB_API_KEY): tables for people, --json
              for scripts; events follows the block event stream (Ctrl-C stops; --after resumes after a sequence)
          kvdb demo [--tokens 32768] [--layers 4] [--queries 4]
              start an in-process server on a free port, load a synthetic Llama-3-8B-shaped context,
              answer attention queries and check them against an f64 reference
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            var options = CliOptions.Parse(args.AsSpan(1), positional: args[0] is "tenant" or "context");
            return args[0] switch
            {
                "serve" => await ServeAsync(options).ConfigureAwait(false),
                "tenant" => await TenantCommand.RunAsync(options).ConfigureAwait(false),
                "context" => await ContextCommand.RunAsync(options).ConfigureAwait(false),
                "stats" or "contexts" or "evict" or "checkpoint" or "events" => await AdminCommands.RunAsync(args[0], options).ConfigureAwait(false),
                "demo" => await DemoCommand.RunAsync(options).ConfigureAwait(false),
                _ => Fail($"unknown command \"{args[0]}\"; run kvdb --help"),
            };
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message);
        }
    }

    private static async Task<int> ServeAsync(CliOptions options)
    {
        var serverOptions = new KvDbServerOptions
        {
            Host = options.Get("host", "127.0.0.1"),
            Port = options.GetInt("port", KvDbServerOptions.DefaultPort),
            DataDirectory = options.GetOrNull("data"),
            CpuBudgetBytes = options.GetLong("cpu-budget", 0),
            GpuBudgetBytes = options.GetLong("gpu-budget", 0),
            CheckpointLogBytes = options.GetLong("checkpoint-log-bytes", 0),
            HttpPort = options.GetInt("http-port", KvDbServerOptions.DefaultHttpPort),
            AdminKey = AdminKey(options),
            Insecure = options.Has("insecure"),
            TlsCertificatePath = options.GetOrNull("tls-cert"),
            TlsKeyPath = options.GetOrNull("tls-key"),
            TlsClientCaPath = options.GetOrNull("tls-client-ca"),
            LogFormat = options.Get("log-format", "text"),
            LogLevel = Enum.TryParse(options.Get("log-level", "warning"), ignoreCase: true, out Microsoft.Extensions.Logging.LogLevel level) && Enum.IsDefined(level)
                ? level
                : throw new ArgumentException($"--log-level must be one of trace, debug, information, warning, error, critical, none; got \"{options.Get("log-level", "")}\""),
        };
        KvDbServerHandle server;
        try
        {
            server = await KvDbServer.StartAsync(serverOptions).ConfigureAwait(false);
        }
        catch (InvalidOperationException e)
        {
            return Fail(e.Message);
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
    private static string? AdminKey(CliOptions options)
    {
        if (options.GetOrNull("admin-key-file") is string file)
        {
            string key = File.ReadLines(file).FirstOrDefault()?.Trim() ?? string.Empty;
            return key.Length > 0 ? key : throw new ArgumentException($"--admin-key-file {file} is empty; put the admin key on its first line");
        }

        return Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY") is { Length: > 0 } env ? env.Trim() : null;
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine("kvdb: " + message);
        return 2;
    }
}

namespace KvDb.Server.Tests;

/// <summary>
/// A durable server with an admin key in a temporary data directory, restartable on the same directory (tenants,
/// keys, quotas and contexts must come back); the directory is deleted on dispose.
/// </summary>
internal sealed class KeyedServer : IAsyncDisposable
{
    private readonly string _data = Path.Combine(Path.GetTempPath(), "kvdb-keyed-" + Guid.NewGuid().ToString("N"));
    private readonly string _adminKey;
    private KvDbServerHandle? _server;

    private KeyedServer(string adminKey)
    {
        _adminKey = adminKey;
    }

    /// <summary>The running server's address.</summary>
    public string Address => _server!.Address;

    /// <summary>The HTTP endpoint (metrics, dashboard) of the running server.</summary>
    public string HttpAddress => _server!.HttpAddress ?? throw new InvalidOperationException("the server has no HTTP endpoint");

    /// <summary>The running server (its executor: index catalog, head statistics).</summary>
    public KvDbServerHandle Handle => _server ?? throw new InvalidOperationException("the server is not running");

    /// <summary>The data directory.</summary>
    public string DataDirectory => _data;

    /// <summary>Starts a server; <paramref name="failuresPerWindow"/> bounds failed authentications per address (tests that make many raise it).</summary>
    public static async Task<KeyedServer> StartAsync(string adminKey, int failuresPerWindow = 1000)
    {
        var server = new KeyedServer(adminKey);
        await server.RestartAsync(failuresPerWindow);
        return server;
    }

    /// <summary>Stops the server (if running) and starts a new one on the same data directory.</summary>
    public async Task RestartAsync(int failuresPerWindow = 1000)
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        _server = await KvDbServer.StartAsync(new KvDbServerOptions
        {
            Host = "127.0.0.1", Port = 0, DataDirectory = _data, AdminKey = _adminKey, CpuBudgetBytes = 128L << 20,
            CalibrateCosts = false, AuthFailuresPerWindow = failuresPerWindow,
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        if (Directory.Exists(_data))
        {
            Directory.Delete(_data, recursive: true);
        }
    }
}

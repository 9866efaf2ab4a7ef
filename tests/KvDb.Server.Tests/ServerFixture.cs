using KvDb.Client;
using KvDb.Server;

namespace KvDb.Server.Tests;

/// <summary>A real Kestrel server on 127.0.0.1 with a free port, shared by the tests of a class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    private KvDbServerHandle? _server;

    public KvDbServerHandle Server => _server ?? throw new InvalidOperationException("server not started");

    public KvDbClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _server = await KvDbServer.StartAsync(new KvDbServerOptions { Host = "127.0.0.1", Port = 0, CpuBudgetBytes = 256L << 20 });
        Client = new KvDbClient(_server.Address);
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

using System.Text.Json;
using KvDb.Client;
using KvDb.TestKit;

namespace KvDb.IntegrationTests;

/// <summary>`kvdb serve --log-format json --log-level debug`: one JSON object per line, one entry per call with its request id, method, status and latency.</summary>
public sealed class StructuredLogTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact(Timeout = 120_000)]
    public async Task Json_logs_carry_one_structured_entry_per_call()
    {
        using ServerProcess server = await ServerProcess.StartAsync(_dir.Path, 64L << 20, "--http-port", "0", "--log-format", "json", "--log-level", "debug");
        using var client = new KvDbClient(server.Address);
        await client.GetStatsAsync();
        var missing = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => client.GetContextAsync("no-such-context"));
        Assert.Equal(Grpc.Core.StatusCode.NotFound, missing.StatusCode);

        JsonElement stats = default;
        JsonElement notFound = default;
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while ((stats.ValueKind == JsonValueKind.Undefined || notFound.ValueKind == JsonValueKind.Undefined) && DateTime.UtcNow < deadline)
        {
            foreach (string line in server.Output)
            {
                if (!line.StartsWith('{'))
                {
                    continue; // the start-up banner is plain text
                }

                JsonElement entry = JsonDocument.Parse(line).RootElement;
                if (entry.GetProperty("Category").GetString() != "KvDb.Server.Observability.MetricsInterceptor")
                {
                    continue;
                }

                JsonElement state = entry.GetProperty("State");
                switch (state.GetProperty("Method").GetString())
                {
                    case "/kvdb.v1.Admin/GetStats":
                        stats = entry;
                        break;
                    case "/kvdb.v1.Contexts/GetContext":
                        notFound = entry;
                        break;
                }
            }

            await Task.Delay(100);
        }

        Assert.Equal("Debug", stats.GetProperty("LogLevel").GetString());
        JsonElement s = stats.GetProperty("State");
        Assert.Equal("OK", s.GetProperty("Status").GetString());
        Assert.False(string.IsNullOrEmpty(s.GetProperty("RequestId").GetString()));
        Assert.True(s.GetProperty("LatencyMs").GetDouble() > 0);
        Assert.True(DateTime.TryParse(stats.GetProperty("Timestamp").GetString(), out _));

        JsonElement n = notFound.GetProperty("State");
        Assert.Equal("NotFound", n.GetProperty("Status").GetString());
        Assert.Contains("no-such-context", n.GetProperty("Detail").GetString(), StringComparison.Ordinal);
        Assert.NotEqual(s.GetProperty("RequestId").GetString(), n.GetProperty("RequestId").GetString());
    }

    public void Dispose() => _dir.Dispose();
}

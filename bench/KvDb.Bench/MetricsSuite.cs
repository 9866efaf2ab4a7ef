using KvDb.Client;
using KvDb.Server;

namespace KvDb.Bench;

/// <summary>
/// Suite "metrics": what counting and timing every call costs an Attend (Prometheus counters and histograms, the
/// dashboard's recent calls, the call log at its default level). Two servers in one process, one with
/// <see cref="KvDbServerOptions.CallMetrics"/> off and one with it on, hold the same context (Llama-3-8B layer shape,
/// bf16, --ctx tokens, default 32K); see <see cref="PairedAttend"/>.
/// </summary>
internal static class MetricsSuite
{
    public static async Task RunAsync(string[] args)
    {
        await using KvDbServerHandle off = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, HttpPort = -1, CalibrateCosts = false, CallMetrics = false }).ConfigureAwait(false);
        await using KvDbServerHandle on = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, HttpPort = -1, CalibrateCosts = false }).ConfigureAwait(false);
        using var offClient = new KvDbClient(off.Address);
        using var onClient = new KvDbClient(on.Address);
        await PairedAttend.RunAsync(args, "metrics", "off", "on", [offClient, onClient]).ConfigureAwait(false);
    }
}

using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

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
        long ctx = SuiteOptions.Get(args, "ctx", 32 * 1024);
        int queries = (int)SuiteOptions.Get(args, "queries", 200);
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 8, NumQueryHeads = 32, HeadDim = 128, Seed = 4242 });
        var model = new Model { Name = "llama3-8b-layer", NumLayers = 1, NumQueryHeads = 32, NumKvHeads = 8, HeadDim = 128, Dtype = DType.Bf16 };

        await using KvDbServerHandle off = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, HttpPort = -1, CalibrateCosts = false, CallMetrics = false }).ConfigureAwait(false);
        await using KvDbServerHandle on = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, HttpPort = -1, CalibrateCosts = false }).ConfigureAwait(false);
        using var offClient = new KvDbClient(off.Address);
        using var onClient = new KvDbClient(on.Address);
        var clients = new[] { offClient, onClient };
        var ids = new string[2];
        for (int s = 0; s < 2; s++)
        {
            await clients[s].CreateModelAsync(model).ConfigureAwait(false);
            ids[s] = await new QueryContext(workload, ctx).LoadAsync(clients[s], "metrics").ConfigureAwait(false);
        }

        await PairedAttend.RunAsync("metrics", "off", "on", clients, ids, workload, ctx, queries).ConfigureAwait(false);
    }
}

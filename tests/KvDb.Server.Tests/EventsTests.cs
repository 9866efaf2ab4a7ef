using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>Admin.WatchEvents: block events (stored, demoted, promoted, removed) in order, as a router would follow them.</summary>
public sealed class EventsTests
{
    [Fact]
    public async Task A_watcher_sees_prefix_blocks_stored_moved_between_tiers_and_removed()
    {
        string data = Path.Combine(Path.GetTempPath(), "kvdb-events-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data, CpuBudgetBytes = 64L << 20 });
            using var client = new KvDbClient(server.Address);
            using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using AsyncServerStreamingCall<BlockEvent> watch = client.Admin.WatchEvents(new WatchEventsRequest(), cancellationToken: cancel.Token);
            await Task.Delay(200); // the subscription is made when the server starts the call

            Model model = await client.CreateModelAsync(TestModels.Small("events"));
            await client.CreateContextAsync(model.Name, id: "e");
            const int tokens = 64; // 4 full blocks of 16 per layer, 2 layers
            await EndToEndTests.Load(client, model, "e", tokens);
            List<BlockEvent> stored = await Next(watch, 8, cancel.Token);
            Assert.All(stored, e => Assert.Equal(("stored", model.Name, 16), (e.Kind, e.Model, e.Tokens)));
            Assert.Equal(8, stored.Select(e => e.Block).Distinct().Count());

            // A fork shares the blocks: nothing new is stored.
            await client.ForkContextAsync("e", "f");
            Assert.True((await client.EvictAsync(0)).Blocks >= 8);
            List<BlockEvent> demoted = await Next(watch, 8, cancel.Token);
            Assert.All(demoted, e => Assert.Equal(("demoted", "disk"), (e.Kind, e.Tier)));
            Assert.Equal(stored.Select(e => e.Block).Order(), demoted.Select(e => e.Block).Order());

            await client.AttendAsync("e", 0, TestModels.Workload(model, tokens, 0).Queries(1, 1), 1, model.NumQueryHeads, model.HeadDim);
            List<BlockEvent> promoted = await Next(watch, 4, cancel.Token);
            Assert.All(promoted, e => Assert.Equal(("promoted", "cpu"), (e.Kind, e.Tier)));
            Assert.All(promoted, e => Assert.EndsWith("/0", e.Block, StringComparison.Ordinal));

            await client.DeleteContextAsync("e");
            await client.DeleteContextAsync("f");
            List<BlockEvent> removed = await Next(watch, 8, cancel.Token);
            Assert.All(removed, e => Assert.Equal("removed", e.Kind));
            Assert.Equal(stored.Select(e => e.Block).Order(), removed.Select(e => e.Block).Order());

            long[] sequence = [.. stored.Concat(demoted).Concat(promoted).Concat(removed).Select(e => e.Sequence)];
            Assert.Equal(sequence.Order(), sequence);
            Assert.Equal(sequence.Length, sequence.Distinct().Count());
        }
        finally
        {
            if (Directory.Exists(data))
            {
                Directory.Delete(data, recursive: true);
            }
        }
    }

    private static async Task<List<BlockEvent>> Next(AsyncServerStreamingCall<BlockEvent> watch, int count, CancellationToken cancel)
    {
        var events = new List<BlockEvent>();
        while (events.Count < count && await watch.ResponseStream.MoveNext(cancel))
        {
            events.Add(watch.ResponseStream.Current);
        }

        return events;
    }
}

using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>Admin.WatchEvents: block events (stored, demoted, promoted, removed) in order, as a router would follow them.</summary>
public sealed class EventsTests
{
    [Fact]
    public async Task A_watcher_that_disconnects_and_resumes_sees_each_of_ten_thousand_block_events_once_in_order()
    {
        using var dir = new KvDb.TestKit.TempDirectory();
        string data = dir.Path;
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data, CpuBudgetBytes = 256L << 20 });
        using var client = new KvDbClient(server.Address);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));

        // One KV head of 8 dims in blocks of 16 tokens: 10,000 full blocks are 160,000 tokens (10 MB) of one layer.
        Model model = await client.CreateModelAsync(new Model { Name = "events-10k", NumLayers = 1, NumQueryHeads = 1, NumKvHeads = 1, HeadDim = 8, Dtype = DType.F32, BlockSize = 16 });
        await client.CreateContextAsync(model.Name, id: "many");
        const int blocks = 10_000;
        Task append = EndToEndTests.Load(client, model, "many", blocks * 16);

        // First watcher: from the start (0 = every event kept), gone after 3,000 events.
        var seen = new List<BlockEvent>();
        using (var first = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token))
        using (AsyncServerStreamingCall<BlockEvent> watch = client.Admin.WatchEvents(new WatchEventsRequest { AfterSequence = 0 }, cancellationToken: first.Token))
        {
            seen.AddRange(await Next(watch, 3_000, timeout.Token, kinds: []));
            first.Cancel();
        }

        var sw = System.Diagnostics.Stopwatch.StartNew();
        await append;

        // Resume after the last one seen, while nothing else happens: the rest arrives once, in order, without a gap.
        using (AsyncServerStreamingCall<BlockEvent> resumed = client.Admin.WatchEvents(new WatchEventsRequest { AfterSequence = seen[^1].Sequence }, cancellationToken: timeout.Token))
        {
            seen.AddRange(await Next(resumed, blocks + 1 - seen.Count, timeout.Token, kinds: []));
        }

        // The context's creation, then one "stored" per block.
        Assert.Equal(Enumerable.Range(1, blocks + 1).Select(s => (long)s), seen.Select(e => e.Sequence));
        Assert.Equal(("context_created", "many", model.Name), (seen[0].Kind, seen[0].Block, seen[0].Model));
        Assert.All(seen.Skip(1), e => Assert.Equal(("stored", 16, "cpu"), (e.Kind, e.Tokens, e.Tier)));
        Assert.Equal(blocks, seen.Skip(1).Select(e => e.Block).Distinct().Count());

        // An eviction moves blocks: one "demoted" event per block, from the CPU tier to disk, after the others.
        EvictResponse evicted = await client.EvictAsync(0);
        using (AsyncServerStreamingCall<BlockEvent> moves = client.Admin.WatchEvents(new WatchEventsRequest { AfterSequence = blocks + 1 }, cancellationToken: timeout.Token))
        {
            List<BlockEvent> moved = await Next(moves, (int)evicted.Blocks, timeout.Token);
            Assert.All(moved, e => Assert.Equal(("demoted", "cpu", "disk"), (e.Kind, e.FromTier, e.Tier)));
            Assert.Equal(Enumerable.Range(blocks + 2, (int)evicted.Blocks).Select(s => (long)s), moved.Select(e => e.Sequence));
        }

        RpcException beyond = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using AsyncServerStreamingCall<BlockEvent> w = client.Admin.WatchEvents(new WatchEventsRequest { AfterSequence = 1_000_000 }, cancellationToken: timeout.Token);
            await w.ResponseStream.MoveNext(timeout.Token);
        });
        Assert.Equal(StatusCode.InvalidArgument, beyond.StatusCode);
    }

    [Fact]
    public async Task Context_lifecycle_events_name_created_forked_deleted_and_expired_contexts()
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false });
        using var client = new KvDbClient(server.Address);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        Model model = await client.CreateModelAsync(TestModels.Small("ctx-events"));
        await client.CreateContextAsync(model.Name, "", "short", null, 1);
        await client.CreateContextAsync(model.Name, id: "kept");
        await EndToEndTests.Load(client, model, "kept", 4096);
        await client.ForkContextAsync("kept", "copy");
        await client.DeleteContextAsync("copy");

        // From the start: the TTL sweep (every second) deletes "short" a second after its creation.
        string[] contextKinds = ["context_created", "context_deleted", "context_expired"];
        using AsyncServerStreamingCall<BlockEvent> watch = client.Admin.WatchEvents(new WatchEventsRequest { AfterSequence = 0 }, cancellationToken: cancel.Token);
        List<BlockEvent> events = await Next(watch, 5, cancel.Token, contextKinds);
        Assert.Equal(
            [("context_created", "short", 0), ("context_created", "kept", 0), ("context_created", "copy", 4096), ("context_deleted", "copy", 4096), ("context_expired", "short", 0)],
            events.Select(e => (e.Kind, e.Block, e.Tokens)));
        Assert.All(events, e => Assert.Equal(model.Name, e.Model));

        // An AUTO query starts an index build of the layer (answered exactly meanwhile); its end is announced.
        await client.AttendAsync("kept", 0, TestModels.Workload(model, 4096, 0).Queries(1, 1), 1, model.NumQueryHeads, model.HeadDim);
        BlockEvent ready = Assert.Single(await Next(watch, 1, cancel.Token, ["index_ready"]));
        Assert.Equal(("kept/0", 4096, model.Name), (ready.Block, ready.Tokens, ready.Model));
        Assert.False(string.IsNullOrEmpty(ready.Tier)); // the index spec, e.g. "centroid:L2"
    }

    [Fact]
    public async Task A_watcher_sees_prefix_blocks_stored_moved_between_tiers_and_removed()
    {
        using var dir = new KvDb.TestKit.TempDirectory();
        string data = dir.Path;
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

    private static readonly string[] BlockKinds = ["stored", "removed", "demoted", "promoted"];

    /// <summary>The next <paramref name="count"/> events of the given kinds (block events by default; context and index events are skipped then).</summary>
    private static async Task<List<BlockEvent>> Next(AsyncServerStreamingCall<BlockEvent> watch, int count, CancellationToken cancel, string[]? kinds = null)
    {
        var events = new List<BlockEvent>();
        while (events.Count < count && await watch.ResponseStream.MoveNext(cancel))
        {
            if (kinds is { Length: 0 } || (kinds ?? BlockKinds).Contains(watch.ResponseStream.Current.Kind))
            {
                events.Add(watch.ResponseStream.Current);
            }
        }

        return events;
    }
}

using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.ContainerTests;

/// <summary>
/// The image as users run it, driven by the .NET client: model → context → append → prefix lookup → attend (EXACT and
/// AUTO against the f64 reference) → fork → ReadKv; the image's HEALTHCHECK turns healthy; then a graceful restart on
/// the same volume brings every acknowledged thing back, bit-exact.
/// </summary>
[Collection(DockerCollection.Name)]
public sealed class ContainerWorkloadTests
{
    private const int Tokens = 4000; // not a multiple of the block size: a partial tail block too
    private const int ForkExtra = 100;
    private const int LongTokens = 32 * 1024;
    private const int Queries = 4;
    private const ulong Seed = 7;

    private readonly KvDbImageFixture _fx;
    private readonly ITestOutputHelper _output;

    public ContainerWorkloadTests(KvDbImageFixture fx, ITestOutputHelper output)
    {
        _fx = fx;
        _output = output;
    }

    [SkippableFact(Timeout = 600_000)]
    public async Task Workload_round_trips_through_the_image_and_survives_a_restart_on_its_volume()
    {
        string image = _fx.RequireImage();
        _output.WriteLine($"image {image} (made or found in {_fx.BuildSeconds:0.0} s)");
        SyntheticWorkload[] doc = [.. Enumerable.Range(0, Scenario.Shape.NumLayers).Select(l => Scenario.Workload(l, Seed, Tokens + ForkExtra))];
        SyntheticWorkload[] forkTail = [.. Enumerable.Range(0, Scenario.Shape.NumLayers).Select(l => Scenario.Workload(l, Seed + 1, Tokens + ForkExtra))];
        int[] ids = Scenario.TokenIds(doc[0], 0, Tokens);
        long prefixHit;

        var started = System.Diagnostics.Stopwatch.StartNew();
        await using KvDbContainer server = await KvDbContainer.StartNewAsync(image);
        _output.WriteLine($"container started and healthy in {started.Elapsed.TotalSeconds:0.0} s (grpc {server.GrpcAddress}, volume {server.VolumeName})");

        await AssertServingAsync(server);
        using (var client = new KvDbClient(server.GrpcAddress, server.AdminKey))
        {
            // Without the key the server refuses: the image's default (a non-loopback bind) runs with authentication.
            using (var anonymous = new KvDbClient(server.GrpcAddress))
            {
                var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => anonymous.GetStatsAsync());
                Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, refused.StatusCode);
            }

            Model model = await client.CreateModelAsync(Scenario.Shape);
            Assert.Equal(Scenario.Shape.Name, model.Name);
            Assert.Equal("doc", (await client.CreateContextAsync(Scenario.Shape.Name, id: "doc")).Id);

            // Two streams (two transactions), each over every layer.
            const int first = 2500;
            using (KvAppendStream stream = client.OpenAppend("doc"))
            {
                await Scenario.WriteAllLayersAsync(stream, l => doc[l], 0, first);
                Assert.Equal(first, (await stream.CompleteAsync()).NumTokens);
            }

            using (KvAppendStream stream = client.OpenAppend("doc"))
            {
                await Scenario.WriteAllLayersAsync(stream, l => doc[l], first, Tokens - first);
                AppendKvResponse ack = await stream.CompleteAsync();
                Assert.Equal(Tokens, ack.NumTokens);
                Assert.All(ack.LayerTokens, t => Assert.Equal(Tokens, t));
            }

            // Prefix lookup: the stored tokens (and more after them) hit the cached prefix; unrelated tokens do not.
            prefixHit = await client.LookupPrefixAsync(Scenario.Shape.Name, string.Empty, [.. ids, 1, 2, 3]);
            _output.WriteLine($"prefix lookup: {prefixHit} of {Tokens} tokens");
            Assert.InRange(prefixHit, Tokens - Scenario.BlockSize, Tokens);
            Assert.Equal(0, await client.LookupPrefixAsync(Scenario.Shape.Name, string.Empty, [.. ids.Select(i => i + 1)]));
            Context fromPrefix = await client.CreateContextAsync(Scenario.Shape.Name, id: "from-prefix", prefixTokenIds: ids);
            Assert.Equal(prefixHit, fromPrefix.NumTokens);

            // Attention: EXACT within f32 rounding of the f64 reference; AUTO within its contract.
            for (int layer = 0; layer < Scenario.Shape.NumLayers; layer++)
            {
                await CheckExactAsync(client, "doc", layer, doc[layer], Tokens);
                await CheckAutoAsync(client, "doc", layer, doc[layer], Tokens);
            }

            // AUTO where sampling pays: a long layer (layer 0 only; layers may differ in length). Once its index is built
            // in the background AUTO must attend fewer tokens than EXACT and stay within the bounds it reports.
            SyntheticWorkload longLayer = Scenario.Workload(0, Seed + 2, LongTokens);
            await client.CreateContextAsync(Scenario.Shape.Name, id: "long");
            await client.AppendLayerAsync("long", 0, Scenario.TokenIds(longLayer, 0, LongTokens), longLayer.KeyBytes(KvDType.F32, 0, LongTokens), longLayer.ValueBytes(KvDType.F32, 0, LongTokens), KvDType.F32, Scenario.Shape.NumKvHeads, Scenario.Shape.HeadDim);
            await CheckExactAsync(client, "long", 0, longLayer, LongTokens);
            AttendStats sampled = await CheckAutoAsync(client, "long", 0, longLayer, LongTokens, mustSample: true);
            Assert.True(sampled.TokensAttended < (long)LongTokens * Scenario.Shape.NumKvHeads * Queries, $"AUTO attended every token of a {LongTokens}-token layer (plan {sampled.Plan})");

            // Fork, then grow the fork only: the parent keeps its length and bytes.
            Context fork = await client.ForkContextAsync("doc", "doc-fork");
            Assert.Equal(Tokens, fork.NumTokens);
            using (KvAppendStream stream = client.OpenAppend("doc-fork"))
            {
                await Scenario.WriteAllLayersAsync(stream, l => forkTail[l], Tokens, ForkExtra);
                Assert.Equal(Tokens + ForkExtra, (await stream.CompleteAsync()).NumTokens);
            }

            await VerifyAsync(client, doc, forkTail, prefixHit, "before the restart");
        }

        // The image's HEALTHCHECK (bash /dev/tcp probe of /healthz) must turn healthy.
        string health = await server.HealthAsync();
        for (int i = 0; i < 60 && health != "healthy"; i++)
        {
            await Task.Delay(1000);
            health = await server.HealthAsync();
        }

        Assert.True(health == "healthy", $"docker health is {health}; output: {await server.LogsAsync()}");
        _output.WriteLine("HEALTHCHECK: healthy");

        // Graceful restart on the same volume.
        var restart = System.Diagnostics.Stopwatch.StartNew();
        await server.StopAsync();
        await server.StartAsync();
        _output.WriteLine($"stop + start + recovery: {restart.Elapsed.TotalSeconds:0.0} s");
        await AssertServingAsync(server);
        using (var client = new KvDbClient(server.GrpcAddress, server.AdminKey))
        {
            Assert.Equal(Scenario.Shape.Name, (await client.Models.GetModelAsync(new GetModelRequest { Name = Scenario.Shape.Name })).Name);
            await VerifyAsync(client, doc, forkTail, prefixHit, "after the restart");
            Assert.Equal(prefixHit, await client.LookupPrefixAsync(Scenario.Shape.Name, string.Empty, [.. ids, 1, 2, 3]));
            for (int layer = 0; layer < Scenario.Shape.NumLayers; layer++)
            {
                await CheckExactAsync(client, "doc", layer, doc[layer], Tokens);
            }

            StatsResponse stats = await client.GetStatsAsync();
            Assert.True(stats.Durable);
            Assert.Equal(0, stats.CorruptRecords);
        }
    }

    /// <summary>grpc.health.v1 answers SERVING without a key (what load balancers and orchestrators probe).</summary>
    private static async Task AssertServingAsync(KvDbContainer server)
    {
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(server.GrpcAddress);
        var health = new Grpc.Health.V1.Health.HealthClient(channel);
        Grpc.Health.V1.HealthCheckResponse r = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, r.Status);
    }

    /// <summary>Every context's length and bytes: doc = tokens [0, Tokens); doc-fork = doc then the fork's own tail; from-prefix = doc's first <paramref name="prefixHit"/>.</summary>
    private static async Task VerifyAsync(KvDbClient client, SyntheticWorkload[] doc, SyntheticWorkload[] forkTail, long prefixHit, string when)
    {
        Assert.Equal(Tokens, (await client.GetContextAsync("doc")).NumTokens);
        Assert.Equal(Tokens + ForkExtra, (await client.GetContextAsync("doc-fork")).NumTokens);
        Assert.Equal(prefixHit, (await client.GetContextAsync("from-prefix")).NumTokens);
        Assert.Equal([LongTokens, 0], (await client.GetContextAsync("long")).LayerTokens);
        for (int layer = 0; layer < Scenario.Shape.NumLayers; layer++)
        {
            await Scenario.AssertLayerAsync(client, "doc", layer, doc[layer], Tokens, when);
            await Scenario.AssertLayerAsync(client, "from-prefix", layer, doc[layer], prefixHit, when);

            (int[] forkIds, byte[] forkKeys, byte[] forkValues) = await client.ReadLayerAsync("doc-fork", layer);
            Assert.Equal([.. Scenario.TokenIds(doc[layer], 0, Tokens), .. Scenario.TokenIds(forkTail[layer], Tokens, ForkExtra)], forkIds);
            byte[] expectedKeys = [.. doc[layer].KeyBytes(KvDType.F32, 0, Tokens), .. forkTail[layer].KeyBytes(KvDType.F32, Tokens, ForkExtra)];
            byte[] expectedValues = [.. doc[layer].ValueBytes(KvDType.F32, 0, Tokens), .. forkTail[layer].ValueBytes(KvDType.F32, Tokens, ForkExtra)];
            Assert.True(expectedKeys.AsSpan().SequenceEqual(forkKeys), $"{when}: keys of doc-fork layer {layer} differ");
            Assert.True(expectedValues.AsSpan().SequenceEqual(forkValues), $"{when}: values of doc-fork layer {layer} differ");
        }
    }

    private static (double[] Output, double[] Lse) Reference(SyntheticWorkload w, int tokens, float[] queries) =>
        ReferenceAttention.Compute(
            Scenario.Floats(w.KeyBytes(KvDType.F32, 0, tokens)),
            Scenario.Floats(w.ValueBytes(KvDType.F32, 0, tokens)),
            queries,
            Queries,
            Scenario.Shape.NumQueryHeads,
            Scenario.Shape.NumKvHeads,
            Scenario.Shape.HeadDim,
            1.0 / Math.Sqrt(Scenario.Shape.HeadDim));

    private async Task CheckExactAsync(KvDbClient client, string context, int layer, SyntheticWorkload w, int tokens)
    {
        float[] q = w.Queries(Queries, 100 + (ulong)layer);
        (double[] refOut, double[] refLse) = Reference(w, tokens, q);
        AttentionPartial exact = await client.AttendAsync(context, layer, q, Queries, Scenario.Shape.NumQueryHeads, Scenario.Shape.HeadDim, plan: new Plan { Kind = PlanKind.Exact });
        double rel = ReferenceAttention.RelativeL2(exact.Output, refOut);
        double lse = ReferenceAttention.MaxAbsError(exact.Lse, refLse);
        _output.WriteLine($"{context} layer {layer} EXACT: rel L2 {rel:E2}, max |ΔLSE| {lse:E2}, plan {exact.Stats?.Plan}");
        Assert.True(rel < 1e-5, $"EXACT layer {layer}: rel L2 {rel} against the f64 reference");
        Assert.True(lse < 1e-4, $"EXACT layer {layer}: LSE off by {lse}");
    }

    /// <summary>
    /// AUTO answers exactly until its index is built in the background, then samples: ask until it samples (bounded),
    /// and check every answer per query head against the reference and the bound the server reported for that head.
    /// </summary>
    private async Task<AttendStats> CheckAutoAsync(KvDbClient client, string context, int layer, SyntheticWorkload w, int tokens, bool mustSample = false)
    {
        float[] q = w.Queries(Queries, 200 + (ulong)layer);
        (double[] refOut, double[] _) = Reference(w, tokens, q);
        int heads = Queries * Scenario.Shape.NumQueryHeads;
        int d = Scenario.Shape.HeadDim;
        long all = (long)tokens * Scenario.Shape.NumKvHeads * Queries;
        AttentionPartial auto = null!;
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(mustSample ? 90 : 10);
        do
        {
            auto = await client.AttendAsync(context, layer, q, Queries, Scenario.Shape.NumQueryHeads, d, plan: new Plan { Kind = PlanKind.Auto });
            if (auto.Stats?.Plan != "exact" && (!mustSample || auto.Stats!.TokensAttended < all))
            {
                break;
            }

            await Task.Delay(250);
        }
        while (DateTime.UtcNow < deadline);

        AttendStats stats = auto.Stats!;
        Assert.Equal(heads, stats.HeadQuality.Count);
        double epsilon = stats.Epsilon > 0 ? stats.Epsilon : 0.05;
        double worst = 0;
        int overBound = 0;
        for (int h = 0; h < heads; h++)
        {
            double err = ReferenceAttention.RelativeL2(auto.Output.AsSpan(h * d, d), refOut.AsSpan(h * d, d));
            worst = Math.Max(worst, err);
            HeadQuality quality = stats.HeadQuality[h];
            double bound = quality.ErrorBound > 0 ? quality.ErrorBound : 1e-5; // 0 = answered exactly
            if (err > bound)
            {
                overBound++;
            }
        }

        _output.WriteLine($"{context} layer {layer} AUTO: plan {stats.Plan}, epsilon {stats.Epsilon}, delta {stats.Delta}, tokens attended {stats.TokensAttended} of {all}, worst rel L2 {worst:E2}, heads over their bound {overBound}/{heads}");

        // The contract: each head's error stays within its bound with probability 1 − delta; allow twice the expected misses
        // (at least one), and nothing far outside.
        double delta = stats.Delta > 0 ? stats.Delta : 0.05;
        Assert.True(overBound <= Math.Max(1, (int)Math.Ceiling(2 * delta * heads)), $"AUTO layer {layer}: {overBound} of {heads} heads over their bound");
        Assert.True(worst <= 3 * epsilon, $"AUTO layer {layer}: worst rel L2 {worst} (epsilon {epsilon})");
        return stats;
    }
}

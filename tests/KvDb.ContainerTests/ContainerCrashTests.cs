using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.ContainerTests;

/// <summary>
/// <c>docker kill</c> (SIGKILL to the server, no shutdown code) in the middle of an append stream: after a restart on
/// the same volume every acknowledged append is there bit-exact, and the stream that was open when the container died
/// is rolled back entirely (in every layer), so appending continues from the acknowledged length.
/// </summary>
[Collection(DockerCollection.Name)]
public sealed class ContainerCrashTests
{
    private readonly KvDbImageFixture _fx;
    private readonly ITestOutputHelper _output;

    public ContainerCrashTests(KvDbImageFixture fx, ITestOutputHelper output)
    {
        _fx = fx;
        _output = output;
    }

    [SkippableFact(Timeout = 600_000)]
    public async Task Docker_kill_mid_stream_keeps_every_acknowledged_append_and_rolls_back_the_open_one()
    {
        string image = _fx.RequireImage();
        string[] contexts = ["a", "b", "c"];
        const int MaxTokens = 8192;
        Dictionary<string, SyntheticWorkload[]> data = contexts.ToDictionary(
            c => c,
            c => Enumerable.Range(0, Scenario.Shape.NumLayers).Select(l => Scenario.Workload(l, 1000 + (ulong)c[0], MaxTokens)).ToArray());
        var acked = contexts.ToDictionary(c => c, _ => 0L);
        var rng = new Random(2024);

        await using KvDbContainer server = await KvDbContainer.StartNewAsync(image);
        using (var client = new KvDbClient(server.GrpcAddress, server.AdminKey))
        {
            await client.CreateModelAsync(Scenario.Shape);
            foreach (string c in contexts)
            {
                await client.CreateContextAsync(Scenario.Shape.Name, id: c);
            }

            // Acknowledged streams of uneven sizes, a checkpoint among them (recovery = checkpoint + log tail).
            for (int i = 0; i < 12; i++)
            {
                string c = contexts[i % contexts.Length];
                int n = 1 + rng.Next(400);
                using KvAppendStream stream = client.OpenAppend(c);
                await Scenario.WriteAllLayersAsync(stream, l => data[c][l], acked[c], n, chunk: 128);
                AppendKvResponse ack = await stream.CompleteAsync();
                Assert.Equal(acked[c] + n, ack.NumTokens);
                acked[c] += n;
                if (i == 5)
                {
                    await client.CheckpointAsync();
                }
            }

            // The open stream: every layer written (all but the completion), then the container dies under it.
            KvAppendStream open = client.OpenAppend("a");
            await Scenario.WriteAllLayersAsync(open, l => data["a"][l], acked["a"], 300, chunk: 100);
            await Task.Delay(500); // let the messages reach the server: it holds them, uncommitted
            _output.WriteLine($"acknowledged: {string.Join(", ", acked.Select(p => $"{p.Key}={p.Value}"))}; killing the container with a 300-token stream open on a");
            await server.KillAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => open.CompleteAsync()); // nobody to acknowledge it
            open.Dispose();
        }

        var restart = System.Diagnostics.Stopwatch.StartNew();
        await server.StartAsync();
        _output.WriteLine($"restart + recovery after docker kill: {restart.Elapsed.TotalSeconds:0.0} s");
        using (var client = new KvDbClient(server.GrpcAddress, server.AdminKey))
        {
            foreach (string c in contexts)
            {
                Context ctx = await client.GetContextAsync(c);
                Assert.True(ctx.NumTokens == acked[c], $"{c}: {ctx.NumTokens} tokens after the kill, {acked[c]} were acknowledged");
                Assert.All(ctx.LayerTokens, t => Assert.Equal(acked[c], t)); // the open stream left nothing in any layer
                for (int layer = 0; layer < Scenario.Shape.NumLayers; layer++)
                {
                    await Scenario.AssertLayerAsync(client, c, layer, data[c][layer], acked[c], "after docker kill");
                }
            }

            StatsResponse stats = await client.GetStatsAsync();
            Assert.Equal(0, stats.CorruptRecords);

            // Appending resumes at the acknowledged length.
            using (KvAppendStream stream = client.OpenAppend("a"))
            {
                await Scenario.WriteAllLayersAsync(stream, l => data["a"][l], acked["a"], 50);
                Assert.Equal(acked["a"] + 50, (await stream.CompleteAsync()).NumTokens);
            }

            acked["a"] += 50;
            for (int layer = 0; layer < Scenario.Shape.NumLayers; layer++)
            {
                await Scenario.AssertLayerAsync(client, "a", layer, data["a"][layer], acked["a"], "after resuming");
            }
        }
    }

    [SkippableFact(Timeout = 120_000)]
    public async Task The_image_runs_as_a_non_root_user_with_data_as_a_volume_and_both_ports_exposed()
    {
        string image = _fx.RequireImage();
        string user = await DockerHost.DockerAsync("image", "inspect", "-f", "{{.Config.User}}", image);
        string volumes = await DockerHost.DockerAsync("image", "inspect", "-f", "{{json .Config.Volumes}}", image);
        string ports = await DockerHost.DockerAsync("image", "inspect", "-f", "{{json .Config.ExposedPorts}}", image);
        string entrypoint = await DockerHost.DockerAsync("image", "inspect", "-f", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}", image);
        string health = await DockerHost.DockerAsync("image", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", image);
        _output.WriteLine($"user {user}; volumes {volumes}; ports {ports}; {entrypoint}; healthcheck {health}");
        Assert.Equal("kvdb", user);
        Assert.Contains("\"/data\"", volumes, StringComparison.Ordinal);
        Assert.Contains("50051/tcp", ports, StringComparison.Ordinal);
        Assert.Contains("50052/tcp", ports, StringComparison.Ordinal);
        Assert.Equal("[\"/opt/kvdb/kvdb\"] [\"serve\",\"--host\",\"0.0.0.0\",\"--port\",\"50051\",\"--data\",\"/data\"]", entrypoint);
        Assert.Contains("kvdb-healthcheck", health, StringComparison.Ordinal);

        // The default command without a key refuses to start open on 0.0.0.0 (the tenancy rule), and says why.
        string output = await DockerHost.DockerAsync("run", "--rm", "--network", "none", "--entrypoint", "/bin/bash", image, "-c", "/opt/kvdb/kvdb serve --host 0.0.0.0 --port 50051 --data /data; echo exit=$?");
        _output.WriteLine(output);
        Assert.DoesNotContain("exit=0", output, StringComparison.Ordinal);

        // Every native library the server may load resolves inside the image (the Faiss shim: OpenBLAS, libgomp, libstdc++).
        string ldd = await DockerHost.DockerAsync("run", "--rm", "--network", "none", "--entrypoint", "/bin/bash", image, "-c", "ldd /opt/kvdb/libkvfaiss.so /opt/kvdb/*.so 2>&1");
        Assert.DoesNotContain("not found", ldd, StringComparison.Ordinal);
        Assert.Contains("libkvfaiss.so", await DockerHost.DockerAsync("run", "--rm", "--network", "none", "--entrypoint", "/bin/ls", image, "/opt/kvdb"), StringComparison.Ordinal);
    }
}

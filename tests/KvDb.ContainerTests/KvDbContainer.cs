using System.Net;
using System.Net.Sockets;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Volumes;

namespace KvDb.ContainerTests;

/// <summary>
/// One KvDb server in a container, as a user runs it: the image's entrypoint with the default command's flags
/// (`serve --host 0.0.0.0 --data /data`, ports chosen free on this host), KVDB_ADMIN_KEY set, a named volume at
/// /data, host networking (talk to 127.0.0.1 only). Restart (graceful stop + start) and kill (`docker kill`, SIGKILL)
/// keep the container and its volume, so what was acknowledged must be back after <see cref="StartAsync"/>.
/// Any client can use <see cref="GrpcAddress"/> and <see cref="AdminKey"/>: the .NET tests here, and the hook for a
/// Python-client run (see README.md).
/// </summary>
public sealed class KvDbContainer : IAsyncDisposable
{
    private readonly IContainer _container;
    private readonly IVolume _volume;

    private KvDbContainer(string image, string adminKey)
    {
        AdminKey = adminKey;
        GrpcPort = FreePort();
        HttpPort = FreePort();
        VolumeName = "kvdb-ct-" + Guid.NewGuid().ToString("N")[..12];
        _volume = new VolumeBuilder().WithName(VolumeName).Build();
        _container = new ContainerBuilder()
            .WithImage(image)
            .WithName("kvdb-ct-" + Guid.NewGuid().ToString("N")[..12])
            .WithEnvironment("KVDB_ADMIN_KEY", adminKey)
            .WithEnvironment("KVDB_HTTP_PORT", HttpPort.ToString()) // read by the image's HEALTHCHECK
            .WithCommand("serve", "--host", "0.0.0.0", "--port", GrpcPort.ToString(), "--http-port", HttpPort.ToString(), "--data", "/data")
            .WithVolumeMount(_volume, "/data")
            .WithCreateParameterModifier(p => p.HostConfig.NetworkMode = "host")
            .Build();
    }

    public string AdminKey { get; }

    public int GrpcPort { get; }

    public int HttpPort { get; }

    public string VolumeName { get; }

    public string ContainerId => _container.Id;

    public string GrpcAddress => $"http://127.0.0.1:{GrpcPort}";

    public string HttpAddress => $"http://127.0.0.1:{HttpPort}";

    /// <summary>Creates the volume and the container and starts it; returns once /healthz answers.</summary>
    public static async Task<KvDbContainer> StartNewAsync(string image, string adminKey = "container-test-admin-key")
    {
        var c = new KvDbContainer(image, adminKey);
        await c._volume.CreateAsync();
        await c.StartAsync();
        return c;
    }

    /// <summary>Starts the (new, stopped or killed) container and waits for /healthz; the server recovers /data first.</summary>
    public async Task StartAsync()
    {
        await _container.StartAsync();
        await WaitHealthyAsync(TimeSpan.FromSeconds(90));
    }

    /// <summary>A graceful stop (SIGTERM, then Docker's grace period).</summary>
    public Task StopAsync() => _container.StopAsync();

    /// <summary><c>docker kill</c>: SIGKILL, no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        await DockerHost.DockerAsync("kill", "--signal", "KILL", _container.Id);
        for (int i = 0; i < 100 && await DockerHost.DockerAsync("inspect", "-f", "{{.State.Running}}", _container.Id) == "true"; i++)
        {
            await Task.Delay(100);
        }
    }

    /// <summary>The container's health as Docker's HEALTHCHECK sees it ("starting", "healthy", "unhealthy").</summary>
    public Task<string> HealthAsync() => DockerHost.DockerAsync("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", _container.Id);

    /// <summary>The server's output so far (for failure messages).</summary>
    public async Task<string> LogsAsync()
    {
        (string stdout, string stderr) = await _container.GetLogsAsync();
        return DockerHost.Last(stdout + stderr, 4000);
    }

    private async Task WaitHealthyAsync(TimeSpan limit)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        DateTime deadline = DateTime.UtcNow + limit;
        string last = "no answer yet";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using HttpResponseMessage response = await http.GetAsync($"{HttpAddress}/healthz");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }

                last = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
            }

            if (await DockerHost.DockerAsync("inspect", "-f", "{{.State.Running}}", _container.Id) != "true")
            {
                throw new InvalidOperationException($"the kvdb container exited while starting; its output: {await LogsAsync()}");
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"{HttpAddress}/healthz did not answer within {limit.TotalSeconds:0} s ({last}); output: {await LogsAsync()}");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _container.DisposeAsync(); // stops and removes it (Ryuk is off: nobody else would)
        }
        finally
        {
            await _volume.DisposeAsync();
        }
    }
}

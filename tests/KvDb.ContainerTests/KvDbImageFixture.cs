using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace KvDb.ContainerTests;

/// <summary>
/// Once per test run: checks that Docker answers, then builds (or reuses by content hash) the image through
/// deploy/image.sh — the script behind <c>./kvdb.sh image</c>, so the tests run exactly what users deploy. When Docker
/// cannot be reached every test skips with the reason (or fails, with KVDB_REQUIRE_DOCKER=1 as in CI).
/// </summary>
public sealed class KvDbImageFixture : IAsyncLifetime
{
    public KvDbImageFixture(IMessageSink sink)
    {
        _sink = sink;

        // No Ryuk (its image would have to be pulled from Docker Hub): the tests remove what they start themselves.
        Environment.SetEnvironmentVariable("TESTCONTAINERS_RYUK_DISABLED", "true");
    }

    private readonly IMessageSink _sink;

    /// <summary>The image reference (kvdb:src-&lt;hash&gt;); null when skipped.</summary>
    public string? Image { get; private set; }

    /// <summary>Why the tests skip: Docker is not reachable. Null when they run.</summary>
    public string? SkipReason { get; private set; }

    /// <summary>Why the image could not be built (a failure, not a skip).</summary>
    public string? BuildError { get; private set; }

    /// <summary>How long making the image took (seconds; near zero when reused).</summary>
    public double BuildSeconds { get; private set; }

    public async Task InitializeAsync()
    {
        string? unreachable = await DockerHost.UnreachableReasonAsync();
        if (unreachable is not null)
        {
            SkipReason = $"Docker is not reachable, so the container tests skip: {unreachable}. Start dockerd (./kvdb.sh image installs and starts it) to run them.";
            return;
        }

        string image = Environment.GetEnvironmentVariable("KVDB_TEST_IMAGE") ?? string.Empty;
        if (image.Length > 0)
        {
            Image = image; // an image made elsewhere (e.g. by ./kvdb.sh image in a pipeline)
            return;
        }

        string root = DockerHost.RepositoryRoot();
        var stopwatch = Stopwatch.StartNew();
        var stdout = new StringBuilder();
        (int code, string output) = await DockerHost.RunAsync("bash", [Path.Combine(root, "deploy", "image.sh"), "--no-latest"], TimeSpan.FromMinutes(15), root, stdout);
        BuildSeconds = stopwatch.Elapsed.TotalSeconds;
        string reference = stdout.ToString().Trim().Split('\n').LastOrDefault()?.Trim() ?? string.Empty;
        if (code != 0 || !reference.StartsWith("kvdb:", StringComparison.Ordinal))
        {
            BuildError = $"deploy/image.sh exited with {code}: {DockerHost.Last(output, 3000)}";
            return;
        }

        Image = reference;
        _sink.OnMessage(new DiagnosticMessage($"container tests: image {Image} ready in {BuildSeconds:0.0} s"));
    }

    /// <summary>Skips (or fails, when Docker is required) without Docker; fails when the image did not build.</summary>
    public string RequireImage()
    {
        if (SkipReason is not null)
        {
            if (Environment.GetEnvironmentVariable(DockerHost.RequireVariable) == "1")
            {
                Assert.Fail($"{DockerHost.RequireVariable}=1 but {SkipReason}");
            }

            Skip.If(true, SkipReason);
        }

        Assert.True(BuildError is null, BuildError);
        return Image!;
    }

    public Task DisposeAsync() => Task.CompletedTask;
}

/// <summary>One collection: the tests share the image and run one after another (two cores; one server at a time).</summary>
[CollectionDefinition(Name)]
public sealed class DockerCollection : ICollectionFixture<KvDbImageFixture>
{
    public const string Name = "docker";
}

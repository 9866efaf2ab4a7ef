using System.Diagnostics;

namespace KvDb.TestKit;

/// <summary>
/// The real kvdb server as a child process ("dotnet kvdb.dll serve --port 0 --data DIR"), killable with SIGKILL.
/// Shared by the integration tests and the bench's fault-injection suite, which both start the built server.
/// </summary>
public sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _output;

    private ServerProcess(Process process, string address, List<string> output)
    {
        _process = process;
        Address = address;
        _output = output;
    }

    public string Address { get; }

    /// <summary>The server's process id (its RSS is read from /proc).</summary>
    public int Pid => _process.Id;

    public IReadOnlyList<string> Output
    {
        get
        {
            lock (_output)
            {
                return [.. _output];
            }
        }
    }

    /// <summary>Starts the server on a free port and returns once it printed its address; <see cref="Output"/> keeps growing with what it prints.</summary>
    public static Task<ServerProcess> StartAsync(string dataDirectory, long cpuBudget = 64L << 20, params string[] extraArguments) =>
        StartAsync(dataDirectory, cpuBudget, TimeSpan.FromSeconds(60), extraArguments);

    /// <summary>As <see cref="StartAsync(string, long, string[])"/>, failing with <see cref="TimeoutException"/> when it does not listen within <paramref name="startTimeout"/>.</summary>
    public static async Task<ServerProcess> StartAsync(string dataDirectory, long cpuBudget, TimeSpan startTimeout, params string[] extraArguments)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // No fixed HTTP port unless asked for: the default one is taken as soon as two servers run on one machine.
        string[] http = extraArguments.Contains("--http-port") ? [] : ["--http-port", "-1"];
        foreach (string a in (string[])[KvdbDll(), "serve", "--port", "0", "--data", dataDirectory, "--cpu-budget", cpuBudget.ToString(System.Globalization.CultureInfo.InvariantCulture), .. http, .. extraArguments])
        {
            info.ArgumentList.Add(a);
        }

        Process p = Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet");
        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var lines = new List<string>();
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                listening.TrySetException(new InvalidOperationException("kvdb exited before listening: " + string.Join('\n', lines)));
                return;
            }

            lock (lines)
            {
                lines.Add(e.Data);
            }

            const string prefix = "kvdb listening on ";
            if (e.Data.StartsWith(prefix, StringComparison.Ordinal))
            {
                listening.TrySetResult(e.Data[prefix.Length..].Trim());
            }
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (lines)
                {
                    lines.Add(e.Data);
                }
            }
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        Task done = await Task.WhenAny(listening.Task, Task.Delay(startTimeout)).ConfigureAwait(false);
        if (done != listening.Task)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("kvdb did not start listening within " + (int)startTimeout.TotalSeconds + " s: " + string.Join('\n', lines));
        }

        var server = new ServerProcess(p, await listening.Task.ConfigureAwait(false), lines);

        return server;
    }

    /// <summary>SIGKILL: no shutdown code runs, like a power cut for everything not yet committed.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.WaitForExit();
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    /// <summary>The kvdb.dll built next to this assembly's configuration (Debug or Release).</summary>
    public static string KvdbDll()
    {
        string baseDir = AppContext.BaseDirectory;
        string config = baseDir.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        DirectoryInfo? dir = new(baseDir);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "KvDb.sln")))
        {
            dir = dir.Parent;
        }

        if (dir is null)
        {
            throw new InvalidOperationException("could not find the repository root (KvDb.sln) above " + baseDir);
        }

        string dll = Path.Combine(dir.FullName, "src", "Cli", "bin", config, "net10.0", "kvdb.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("build src/Cli first", dll);
    }
}

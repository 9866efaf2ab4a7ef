using System.Diagnostics;
using System.Globalization;

namespace KvDb.Load;

/// <summary><c>kvdb serve</c> as a child process on 127.0.0.1 and a free port, with the run's budget and data directory.</summary>
public sealed class ServerChild : IDisposable
{
    private readonly Process _process;

    private ServerChild(Process process, string address, string? httpAddress)
    {
        _process = process;
        Address = address;
        HttpAddress = httpAddress;
    }

    /// <summary>Its HTTP endpoint (/metrics), when it printed one.</summary>
    public string? HttpAddress { get; }

    /// <summary>The gRPC address it printed.</summary>
    public string Address { get; }

    /// <summary>Its process id (for /proc sampling).</summary>
    public int Pid => _process.Id;

    /// <summary>True once it exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Starts <c>dotnet KVDB.dll serve</c> and returns once it prints its address (at most 60 s).</summary>
    public static async Task<ServerChild> StartAsync(string kvdbDll, long cpuBudget, string dataDirectory, IEnumerable<string> extra)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])[kvdbDll, "serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--cpu-budget", cpuBudget.ToString(CultureInfo.InvariantCulture), "--data", dataDirectory, .. extra])
        {
            info.ArgumentList.Add(a);
        }

        Process p = Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet");
        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        string? http = null;
        p.OutputDataReceived += (_, e) =>
        {
            const string prefix = "kvdb listening on ";
            const string dashboard = "kvdb dashboard on ";
            if (e.Data is not null && e.Data.StartsWith(dashboard, StringComparison.Ordinal))
            {
                // Printed right after the gRPC address: read once the address arrived (below) or not at all.
                http = e.Data[dashboard.Length..].Split('/', 4) is [string scheme, _, string host, ..] ? $"{scheme}//{host}" : null;
            }
            else if (e.Data is null)
            {
                listening.TrySetException(new InvalidOperationException("kvdb exited before it listened"));
            }
            else if (e.Data.StartsWith(prefix, StringComparison.Ordinal))
            {
                listening.TrySetResult(e.Data[prefix.Length..].Trim());
            }
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                Console.Error.WriteLine("kvdb: " + e.Data);
            }
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (await Task.WhenAny(listening.Task, Task.Delay(TimeSpan.FromSeconds(60))).ConfigureAwait(false) != listening.Task)
        {
            p.Kill(entireProcessTree: true);
            p.Dispose();
            throw new TimeoutException("kvdb did not listen within 60 s");
        }

        string address = await listening.Task.ConfigureAwait(false);
        for (int i = 0; i < 50 && http is null; i++)
        {
            await Task.Delay(20).ConfigureAwait(false);
        }

        return new ServerChild(p, address, http);
    }

    /// <summary>The kvdb.dll built in this checkout (src/Cli's output, the same configuration as this program).</summary>
    public static string FindKvdbDll()
    {
        string baseDir = AppContext.BaseDirectory;
        string config = baseDir.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
        DirectoryInfo? dir = new(baseDir);
        for (int up = 0; up < 12 && dir is not null && !File.Exists(Path.Combine(dir.FullName, "KvDb.sln")); up++)
        {
            dir = dir.Parent;
        }

        string dll = Path.Combine(dir?.FullName ?? ".", "src", "Cli", "bin", config, "net10.0", "kvdb.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"build src/Cli first ({config}): {dll} is missing", dll);
    }

    /// <summary>SIGKILL (soak runs and the end of a run).</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}

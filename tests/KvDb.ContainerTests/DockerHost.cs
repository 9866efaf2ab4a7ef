using System.Diagnostics;
using System.Text;

namespace KvDb.ContainerTests;

/// <summary>
/// The Docker side of the container tests: whether a daemon answers, the repository root, and the docker CLI for what
/// Testcontainers 3.6 has no call for (<c>docker kill</c>, the health status).
/// </summary>
internal static class DockerHost
{
    /// <summary>Set to 1 (./kvdb.sh test does in CI) to make an unreachable Docker a failure instead of a skip.</summary>
    public const string RequireVariable = "KVDB_REQUIRE_DOCKER";

    /// <summary>The repository root: the first directory above the test assembly that holds KvDb.sln.</summary>
    public static string RepositoryRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "KvDb.sln")))
            {
                return d.FullName;
            }
        }

        throw new InvalidOperationException($"no KvDb.sln above {AppContext.BaseDirectory}");
    }

    /// <summary>Null when <c>docker info</c> answers; otherwise why not, for the skip message.</summary>
    public static async Task<string?> UnreachableReasonAsync()
    {
        try
        {
            (int code, string output) = await RunAsync("docker", ["info", "--format", "{{.ServerVersion}}"], TimeSpan.FromSeconds(30));
            return code == 0 ? null : $"`docker info` exited with {code}: {Last(output, 300)}";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"no docker CLI on PATH ({e.Message})";
        }
        catch (TimeoutException e)
        {
            return e.Message;
        }
    }

    /// <summary>Runs the docker CLI; throws with its output when it fails.</summary>
    public static async Task<string> DockerAsync(params string[] args)
    {
        (int code, string output) = await RunAsync("docker", args, TimeSpan.FromMinutes(2));
        if (code != 0)
        {
            throw new InvalidOperationException($"docker {string.Join(' ', args)} exited with {code}: {Last(output, 2000)}");
        }

        return output.Trim();
    }

    /// <summary>Runs a process to its end (or kills it at <paramref name="timeout"/>); stdout and stderr together.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout, string? workingDirectory = null, StringBuilder? stdout = null)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        var all = new StringBuilder();
        var gate = new object();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (gate)
            {
                all.AppendLine(e.Data);
                stdout?.AppendLine(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (gate)
            {
                all.AppendLine(e.Data);
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', start.ArgumentList)} did not finish within {timeout.TotalSeconds:0} s");
        }

        process.WaitForExit(); // drains the output events
        lock (gate)
        {
            return (process.ExitCode, all.ToString());
        }
    }

    public static string Last(string text, int chars) => text.Length <= chars ? text.Trim() : "…" + text[^chars..].Trim();
}

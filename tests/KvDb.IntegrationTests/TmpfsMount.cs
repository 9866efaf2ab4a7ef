using System.Diagnostics;
using KvDb.TestKit;

namespace KvDb.IntegrationTests;

/// <summary>
/// A small tmpfs mounted on a fresh directory (a filesystem that fills up on purpose), unmounted and removed on
/// dispose. Mounting needs root (CAP_SYS_ADMIN); <see cref="TryMount"/> says why when it cannot.
/// </summary>
internal sealed class TmpfsMount : IDisposable
{
    private static readonly TimeSpan CommandLimit = TimeSpan.FromSeconds(20);
    private readonly TempDirectory _dir;

    private TmpfsMount(TempDirectory dir)
    {
        _dir = dir;
    }

    public string Path => _dir.Path;

    /// <summary>Mounts a tmpfs of <paramref name="megabytes"/> MiB, or returns null with the reason it could not.</summary>
    public static TmpfsMount? TryMount(int megabytes, out string? whyNot)
    {
        var dir = new TempDirectory("kvdb-tmpfs-");
        (int code, string output) = Run("mount", "-t", "tmpfs", "-o", $"size={megabytes}m", "tmpfs", dir.Path);
        if (code != 0)
        {
            dir.Dispose();
            whyNot = $"mount -t tmpfs failed (exit {code}: {output.Trim()}); the disk-full test needs root or CAP_SYS_ADMIN";
            return null;
        }

        whyNot = null;
        return new TmpfsMount(dir);
    }

    public void Dispose()
    {
        // A lazy unmount as the fallback: a server that is still dying keeps files open for a moment.
        if (Run("umount", Path).Code != 0)
        {
            Run("umount", "-l", Path);
        }

        _dir.Dispose();
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
        {
            info.ArgumentList.Add(a);
        }

        try
        {
            using Process p = Process.Start(info) ?? throw new InvalidOperationException("could not start " + file);
            Task<string> stdout = p.StandardOutput.ReadToEndAsync();
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(CommandLimit))
            {
                p.Kill();
                return (-1, file + " did not finish within " + CommandLimit.TotalSeconds + " s");
            }

            return (p.ExitCode, stdout.Result + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}

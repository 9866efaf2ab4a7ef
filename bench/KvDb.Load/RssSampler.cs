namespace KvDb.Load;

/// <summary>Samples a process's resident set (VmRSS of /proc/PID/status) every 100 ms and keeps the peak.</summary>
public sealed class RssSampler : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _peak;
    private long _last;

    /// <summary>Starts sampling process <paramref name="pid"/>.</summary>
    public RssSampler(int pid)
    {
        Pid = pid;
        _loop = Task.Run(() => LoopAsync(_stop.Token));
    }

    /// <summary>The process sampled.</summary>
    public int Pid { get; }

    /// <summary>Largest VmRSS seen, in bytes.</summary>
    public long PeakBytes => Interlocked.Read(ref _peak);

    /// <summary>The latest VmRSS, in bytes.</summary>
    public long LastBytes => Interlocked.Read(ref _last);

    /// <summary>VmRSS of <paramref name="pid"/> in bytes; −1 when the process is gone.</summary>
    public static long Read(int pid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return -1;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task LoopAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        do
        {
            long rss = Read(Pid);
            if (rss > 0)
            {
                Interlocked.Exchange(ref _last, rss);
                if (rss > Interlocked.Read(ref _peak))
                {
                    Interlocked.Exchange(ref _peak, rss);
                }
            }

            try
            {
                if (!await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        while (true);
    }
}

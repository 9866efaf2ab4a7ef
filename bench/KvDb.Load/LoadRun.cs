using System.Diagnostics;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Load;

/// <summary>
/// A load run: N engines against one server for a fixed time, a watchdog that fails the run when progress stops, and
/// the server's RSS sampled every 100 ms when it is a child process (or <paramref name="serverPid"/> is given).
/// </summary>
public static class LoadRun
{
    /// <summary>Runs against <paramref name="address"/>; <paramref name="progress"/> receives a JSON line every 10 s.</summary>
    public static async Task<LoadReport> RunAsync(LoadOptions options, string address, int? serverPid, Action<string> progress, string? metricsAddress = null)
    {
        using (var setup = new KvDbClient(address))
        {
            try
            {
                await setup.CreateModelAsync(Engine.Model).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
            {
                // A server given with --server may know the model from an earlier run.
            }
        }

        // One prompt's K/V for every engine (bf16 bit patterns of small values): engines with the same token ids then
        // store the same content, which the server dedupes.
        int rowBytes = Engine.Model.NumKvHeads * Engine.Model.HeadDim * 2;
        var keys = new byte[options.PrefixTokens * rowBytes];
        var values = new byte[keys.Length];
        FillBf16(keys, 1);
        FillBf16(values, 2);

        var stats = new LoadStats();
        var clients = new KvDbClient[options.Engines];
        var engines = new Engine[options.Engines];
        for (int i = 0; i < engines.Length; i++)
        {
            clients[i] = new KvDbClient(address);
            engines[i] = new Engine(i, clients[i], options, stats, keys, values);
        }

        await using RssSampler? rss = serverPid is int pid ? new RssSampler(pid) : null;
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        Task[] running = new Task[engines.Length];
        for (int i = 0; i < engines.Length; i++)
        {
            Engine e = engines[i];
            running[i] = Task.Run(() => e.RunAsync(stop.Token));
        }

        bool deadlocked = await WatchAsync(options, stats, rss, clock, progress).ConfigureAwait(false);
        await stop.CancelAsync().ConfigureAwait(false);
        Task all = Task.WhenAll(running);
        if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))).ConfigureAwait(false) != all)
        {
            deadlocked = true;
        }

        double seconds = clock.Elapsed.TotalSeconds;
        (long, long, int, long) server = await ServerAccountAsync(clients[0], metricsAddress).ConfigureAwait(false);
        foreach (KvDbClient c in clients)
        {
            c.Dispose();
        }

        var latency = new Dictionary<CallKind, (int, double, double, double)>();
        long ok = 0;
        foreach (CallKind kind in Enum.GetValues<CallKind>())
        {
            double[] sorted = LatencyLog.Merged(Array.ConvertAll(engines, e => e.Latencies), kind);
            ok += sorted.Length;
            if (sorted.Length > 0)
            {
                latency[kind] = (sorted.Length, LatencyLog.Quantile(sorted, 0.5), LatencyLog.Quantile(sorted, 0.99), sorted[^1]);
            }
        }

        var codes = new Dictionary<StatusCode, long>();
        var details = new Dictionary<StatusCode, string>();
        foreach (StatusCode code in Enum.GetValues<StatusCode>())
        {
            if (stats.Code(code) > 0)
            {
                codes[code] = stats.Code(code);
            }

            if (stats.FirstDetail(code) is string detail)
            {
                details[code] = detail;
            }
        }

        return new LoadReport
        {
            Engines = options.Engines,
            Seconds = seconds,
            RequestsPerSecond = ok / seconds,
            TokensPerSecond = stats.Tokens / seconds,
            Latency = latency,
            Codes = codes,
            FirstDetails = details,
            Rejections = stats.Rejections,
            Stalls = stats.Stalls,
            Deadlocked = deadlocked,
            PeakRssBytes = rss?.PeakBytes ?? 0,
            CpuBudgetBytes = options.CpuBudgetBytes,
            OverheadBytes = options.OverheadBytes,
            Server = server,
        };
    }

    /// <summary>What the server says it holds (GetStats) and its managed heap (/metrics' dotnet_total_memory_bytes).</summary>
    private static async Task<(long, long, int, long)> ServerAccountAsync(KvDbClient client, string? metricsAddress)
    {
        long cpu = 0, disk = 0, heap = 0;
        int contexts = 0;
        try
        {
            StatsResponse stats = await client.GetStatsAsync().ConfigureAwait(false);
            contexts = stats.Contexts;
            foreach (TierStats t in stats.Tiers)
            {
                cpu += t.Name == "cpu" ? t.Bytes : 0;
                disk += t.Name == "disk" ? t.Bytes : 0;
            }
        }
        catch (RpcException)
        {
            // Reported as 0: the figures are context, the run's verdict does not depend on them.
        }

        if (metricsAddress is not null)
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            try
            {
                string text = await http.GetStringAsync(new Uri(metricsAddress + "/metrics")).ConfigureAwait(false);
                foreach (string line in text.Split('\n'))
                {
                    if (line.StartsWith("dotnet_total_memory_bytes ", StringComparison.Ordinal))
                    {
                        heap = (long)double.Parse(line.AsSpan("dotnet_total_memory_bytes ".Length), System.Globalization.CultureInfo.InvariantCulture);
                    }
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
        }

        return (cpu, disk, contexts, heap);
    }

    /// <summary>Waits out the run (checking every 250 ms); true when no call completed for the stall limit.</summary>
    private static async Task<bool> WatchAsync(LoadOptions options, LoadStats stats, RssSampler? rss, Stopwatch clock, Action<string> progress)
    {
        long lastCompleted = -1;
        TimeSpan lastProgress = TimeSpan.Zero;
        TimeSpan lastReport = TimeSpan.Zero;
        int ticks = (int)Math.Ceiling(options.Duration.TotalMilliseconds / 250) + 1;
        for (int tick = 0; tick < ticks && clock.Elapsed < options.Duration; tick++)
        {
            await Task.Delay(250).ConfigureAwait(false);
            long completed = stats.Completed;
            if (completed != lastCompleted)
            {
                lastCompleted = completed;
                lastProgress = clock.Elapsed;
            }
            else if (clock.Elapsed - lastProgress > options.StallLimit)
            {
                return true;
            }

            if (clock.Elapsed - lastReport >= TimeSpan.FromSeconds(10))
            {
                lastReport = clock.Elapsed;
                progress($"{{\"type\":\"progress\",\"t\":{clock.Elapsed.TotalSeconds:0},\"calls\":{completed},\"tokens\":{stats.Tokens},\"rejections\":{stats.Rejections},\"rss_mib\":{(rss?.LastBytes ?? 0) >> 20}}}");
            }
        }

        return false;
    }

    private static void FillBf16(byte[] bytes, int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i + 1 < bytes.Length; i += 2)
        {
            // bf16 of a value in about ±1: the upper half of its f32 bits.
            float v = (float)((random.NextDouble() * 2) - 1);
            ushort bits = (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16);
            bytes[i] = (byte)bits;
            bytes[i + 1] = (byte)(bits >> 8);
        }
    }
}

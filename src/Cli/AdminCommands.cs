using System.CommandLine;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Cli;

/// <summary>
/// <c>kvdb stats | contexts | evict | checkpoint | compact | events</c>: operating a running server from a shell. Tables for
/// people; <c>--json</c> prints protobuf JSON (one object, or one line per event) for scripts. The key comes from
/// KVDB_ADMIN_KEY (or KVDB_API_KEY: a tenant key sees its own contexts).
/// </summary>
internal static class AdminCommands
{
    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    /// <summary>The five commands, each with <c>--json</c>, <c>--server</c> and <c>--ca-file</c>.</summary>
    public static IEnumerable<Command> Create()
    {
        yield return AdminCommand("stats", "Store and tier figures, and tenants' usage against their quotas.", [], (client, _, json) => StatsAsync(client, json));

        var ns = new Option<string?>("--namespace") { Description = "only the contexts of this namespace", HelpName = "NS" };
        Option<int> limit = NumberOptions.NonNegative("--limit", "list at most this many contexts", 100);
        yield return AdminCommand("contexts", "The contexts with their tokens, bytes, pin and expiry.", [ns, limit], (client, parse, json) => ContextsAsync(client, parse.GetValue(ns), parse.GetValue(limit), json));

        Option<long> target = NumberOptions.NonNegative("--target", "bytes the CPU tier may hold afterwards", 0L, "BYTES");
        yield return AdminCommand("evict", "Demote cold unpinned blocks of the CPU tier to disk until it holds at most --target bytes.", [target], (client, parse, json) => EvictAsync(client, parse.GetValue(target), json));

        yield return AdminCommand("checkpoint", "Write a checkpoint now and truncate the write-ahead log (prints progress, then what it wrote).", [], (client, _, json) => CheckpointAsync(client, json));

        yield return AdminCommand("compact", "Give the disk space of deleted and dropped blocks back now: copy the live blocks forward, checkpoint, truncate the disk block log.", [], (client, _, json) => CompactAsync(client, json));

        Option<long> after = NumberOptions.NonNegative("--after", "resume after this sequence number, the last one received (0 = every event still kept); left out: live events only", 0L, "SEQ");
        after.DefaultValueFactory = null; // left out is not 0: see WasGiven below
        Option<long> count = NumberOptions.NonNegative("--count", "stop after this many events; 0 = follow until Ctrl-C", 0L);
        yield return AdminCommand("events", "Follow the block, context and index event stream (Ctrl-C stops; --after resumes after a sequence number).", [after, count], (client, parse, json) => EventsAsync(client, parse.WasGiven(after) ? parse.GetValue(after) : null, parse.GetValue(count), json));
    }

    private static Command AdminCommand(string name, string description, Option[] options, Func<KvDbClient, ParseResult, bool, Task> body)
    {
        var json = new Option<bool>("--json") { Description = "protobuf JSON (64-bit numbers as strings) for scripts instead of a table" };
        var command = new Command(name, description) { json };
        foreach (Option option in options)
        {
            command.Options.Add(option);
        }

        var connection = new ServerConnection("KVDB_ADMIN_KEY", "KVDB_API_KEY");
        connection.AddTo(command);
        connection.SetAction(command, async (parse, client) =>
        {
            await body(client, parse, parse.GetValue(json)).ConfigureAwait(false);
            return 0;
        });
        return command;
    }

    private static async Task StatsAsync(KvDbClient client, bool json) => Stats(await client.GetStatsAsync().ConfigureAwait(false), json);

    private static async Task EvictAsync(KvDbClient client, long target, bool json)
    {
        EvictResponse r = await client.EvictAsync(target).ConfigureAwait(false);
        Console.WriteLine(json ? Json.Format(r) : $"demoted {r.Blocks:N0} blocks ({Bytes(r.Bytes)}) to bring the CPU tier down to {Bytes(target)}");
    }

    private static async Task CheckpointAsync(KvDbClient client, bool json)
    {
        if (!json)
        {
            Console.Error.WriteLine("kvdb: writing a checkpoint…");
        }

        CheckpointResponse r = await client.CheckpointAsync().ConfigureAwait(false);
        Console.WriteLine(json ? Json.Format(r) : $"checkpoint of {r.Contexts:N0} contexts and {r.Blocks:N0} blocks in {r.Milliseconds:F0} ms; {Bytes(r.LogBytesTruncated)} of log truncated");
    }

    private static async Task CompactAsync(KvDbClient client, bool json)
    {
        if (!json)
        {
            Console.Error.WriteLine("kvdb: compacting the disk block log…");
        }

        CompactResponse r = await client.CompactAsync().ConfigureAwait(false);
        Console.WriteLine(json
            ? Json.Format(r)
            : $"moved {r.BlocksMoved:N0} live blocks ({Bytes(r.BytesMoved)}) in {r.Milliseconds:F0} ms; block log files {Bytes(r.DiskBytesBefore)} → {Bytes(r.DiskBytesAfter)}{(r.CorruptBlocks > 0 ? $"; {r.CorruptBlocks:N0} corrupt blocks found (not served)" : string.Empty)}");
    }

    private static void Stats(StatsResponse s, bool json)
    {
        if (json)
        {
            Console.WriteLine(Json.Format(s));
            return;
        }

        long cpu = s.Tiers.FirstOrDefault(t => t.Name == "cpu")?.Bytes ?? 0;
        Console.WriteLine($"{(s.Durable ? "durable" : "memory only")}: {s.Models} models, {s.Contexts} contexts, {Bytes(s.LogicalBytes)} stored, CPU tier {Bytes(cpu)} of {Bytes(s.CpuBudgetBytes)}");
        Console.WriteLine($"shared blocks {s.SharedBlocks:N0}, dedupe hits {s.DedupeHits:N0}, expired contexts {s.ExpiredContexts:N0}, corrupt records {s.CorruptRecords:N0}, WAL {Bytes(s.WalBytes)}");
        if (s.Disk is { } d)
        {
            Console.WriteLine($"disk: block log {Bytes(d.BlockLogLiveBytes)} live, {Bytes(d.BlockLogDeadBytes)} dead ({d.BlockLogDeadRatio:P0}; kvdb compact gives it back), files {Bytes(d.BlockLogFileBytes)} + WAL {Bytes(d.WalFileBytes)}, {d.Compactions:N0} compactions");
        }
        Table(
            ["tier", "bytes", "blocks", "hits", "misses", "hit ratio"],
            s.Tiers.Select(t => new[] { t.Name, Bytes(t.Bytes), t.Blocks.ToString("N0", CultureInfo.InvariantCulture), t.Hits.ToString("N0", CultureInfo.InvariantCulture), t.Misses.ToString("N0", CultureInfo.InvariantCulture), t.Hits + t.Misses == 0 ? "–" : ((double)t.Hits / (t.Hits + t.Misses)).ToString("P1", CultureInfo.InvariantCulture) }));
        if (s.Tenants.Count > 0)
        {
            Table(
                ["tenant", "bytes (quota)", "CPU tier (share)", "contexts (quota)", "streams (quota)"],
                s.Tenants.Select(t => new[] { t.Tenant, $"{Bytes(t.Bytes)} ({Quota(t.QuotaBytes, Bytes)})", $"{Bytes(t.CpuBytes)} ({Quota(t.QuotaCpuBytes, Bytes)})", $"{t.Contexts} ({Quota(t.QuotaContexts, v => v.ToString(CultureInfo.InvariantCulture))})", $"{t.Streams} ({Quota(t.QuotaStreams, v => v.ToString(CultureInfo.InvariantCulture))})" }));
        }
    }

    private static async Task ContextsAsync(KvDbClient client, string? ns, int limit, bool json)
    {
        var rows = new List<Context>();
        string token = string.Empty;
        do
        {
            ListContextsResponse page = await client.ListContextsAsync(500, token).ConfigureAwait(false);
            rows.AddRange(page.Contexts.Where(c => ns is null || c.Namespace == ns));
            token = page.NextPageToken;
        }
        while (token.Length > 0 && rows.Count < limit);

        if (rows.Count > limit)
        {
            rows.RemoveRange(limit, rows.Count - limit);
        }

        if (json)
        {
            var response = new ListContextsResponse();
            response.Contexts.Add(rows);
            Console.WriteLine(Json.Format(response));
            return;
        }

        Table(
            ["id", "namespace", "model", "tokens", "bytes", "pinned", "expires"],
            rows.Select(c => new[] { c.Id, c.Namespace, c.Model, c.NumTokens.ToString("N0", CultureInfo.InvariantCulture), Bytes(c.Bytes), c.Pinned ? "yes" : "", c.ExpiresAtUnixMs == 0 ? "never" : DateTimeOffset.FromUnixTimeMilliseconds(c.ExpiresAtUnixMs).ToString("u", CultureInfo.InvariantCulture) }));
        Console.WriteLine($"{rows.Count} context(s){(token.Length > 0 ? $" (first {limit}; --limit N for more)" : string.Empty)}");
    }

    private static async Task EventsAsync(KvDbClient client, long? after, long count, bool json)
    {
        var request = new WatchEventsRequest();
        if (after is long sequence)
        {
            request.AfterSequence = sequence;
        }

        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        using AsyncServerStreamingCall<BlockEvent> watch = client.Admin.WatchEvents(request, cancellationToken: cancel.Token);
        long seen = 0;
        try
        {
            while ((count == 0 || seen < count) && await watch.ResponseStream.MoveNext(cancel.Token).ConfigureAwait(false))
            {
                BlockEvent e = watch.ResponseStream.Current;
                seen++;
                Console.WriteLine(json
                    ? Json.Format(e)
                    : e.Kind == "gap"
                        ? $"{e.Sequence,10}  gap: {e.Lost:N0} events no longer kept"
                        : $"{e.Sequence,10}  {DateTimeOffset.FromUnixTimeMilliseconds(e.UnixMs):HH:mm:ss.fff}  {e.Kind,-9} {(e.FromTier.Length > 0 ? e.FromTier + "→" : string.Empty)}{e.Tier,-5} {e.Model}  {e.Block}  {e.Tokens} tokens");
            }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancel.IsCancellationRequested)
        {
            // Ctrl-C.
        }
    }

    private static string Quota<T>(T value, Func<T, string> format)
        where T : System.Numerics.INumber<T> => T.IsZero(value) ? "∞" : format(value);

    private static string Bytes(long n)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = n;
        int u = 0;
        while (Math.Abs(v) >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }

        return u == 0 ? $"{n} B" : string.Create(CultureInfo.InvariantCulture, $"{v:F2} {units[u]}");
    }

    private static void Table(string[] header, IEnumerable<string[]> rows)
    {
        List<string[]> all = [header, .. rows];
        var widths = new int[header.Length];
        foreach (string[] r in all)
        {
            for (int i = 0; i < r.Length; i++)
            {
                widths[i] = Math.Max(widths[i], r[i].Length);
            }
        }

        foreach (string[] r in all)
        {
            Console.WriteLine(string.Join("  ", r.Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
        }
    }
}

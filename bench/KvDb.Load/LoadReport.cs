using System.Text;
using System.Text.Json;
using Grpc.Core;

namespace KvDb.Load;

/// <summary>The outcome of a run, written as one JSON object per line.</summary>
public sealed record LoadReport
{
    /// <summary>Engines that ran.</summary>
    public required int Engines { get; init; }

    /// <summary>Seconds the engines ran.</summary>
    public required double Seconds { get; init; }

    /// <summary>Successful calls per second.</summary>
    public required double RequestsPerSecond { get; init; }

    /// <summary>Tokens appended and acknowledged per second (prompt and decode).</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Per call kind: count, p50, p99 and max in ms.</summary>
    public required IReadOnlyDictionary<CallKind, (int Count, double P50, double P99, double Max)> Latency { get; init; }

    /// <summary>Answers per status code.</summary>
    public required IReadOnlyDictionary<StatusCode, long> Codes { get; init; }

    /// <summary>The first detail seen per failing status code.</summary>
    public IReadOnlyDictionary<StatusCode, string> FirstDetails { get; init; } = new Dictionary<StatusCode, string>();

    /// <summary>RESOURCE_EXHAUSTED answers the engines backed off on.</summary>
    public required long Rejections { get; init; }

    /// <summary>Calls past their deadline.</summary>
    public required long Stalls { get; init; }

    /// <summary>True when no call completed for the stall limit, or the engines did not stop.</summary>
    public required bool Deadlocked { get; init; }

    /// <summary>Largest server RSS sampled (bytes); 0 when the server is not a child.</summary>
    public required long PeakRssBytes { get; init; }

    /// <summary>The server's CPU budget.</summary>
    public required long CpuBudgetBytes { get; init; }

    /// <summary>The server's own account at the end (Admin.GetStats): K/V bytes in the CPU tier, on disk, contexts; and its managed heap from /metrics (0 when unknown).</summary>
    public (long CpuTierBytes, long DiskTierBytes, int Contexts, long ManagedHeapBytes) Server { get; init; }

    /// <summary>The overhead allowed on top of the budget.</summary>
    public required long OverheadBytes { get; init; }

    /// <summary>Codes that mean a server fault.</summary>
    public long Faults => Count(StatusCode.Internal) + Count(StatusCode.Unknown) + Count(StatusCode.DataLoss);

    /// <summary>No fault, no stall, no deadlock, RSS under budget + overhead.</summary>
    public bool Passed => Faults == 0 && Stalls == 0 && !Deadlocked && PeakRssBytes <= CpuBudgetBytes + OverheadBytes;

    /// <summary>Answers with <paramref name="code"/>.</summary>
    public long Count(StatusCode code) => Codes.TryGetValue(code, out long n) ? n : 0;

    /// <summary>The report as one line of JSON.</summary>
    public string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", "summary");
            w.WriteNumber("engines", Engines);
            w.WriteNumber("seconds", Math.Round(Seconds, 1));
            w.WriteNumber("requests_per_s", Math.Round(RequestsPerSecond, 1));
            w.WriteNumber("tokens_per_s", Math.Round(TokensPerSecond, 1));
            w.WriteStartObject("latency_ms");
            foreach ((CallKind kind, (int count, double p50, double p99, double max)) in Latency)
            {
                w.WriteStartObject(kind.ToString());
                w.WriteNumber("count", count);
                w.WriteNumber("p50", Math.Round(p50, 2));
                w.WriteNumber("p99", Math.Round(p99, 2));
                w.WriteNumber("max", Math.Round(max, 2));
                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.WriteStartObject("status_codes");
            foreach ((StatusCode code, long n) in Codes)
            {
                w.WriteNumber(code.ToString(), n);
            }

            w.WriteEndObject();
            w.WriteStartObject("first_detail");
            foreach ((StatusCode code, string detail) in FirstDetails)
            {
                w.WriteString(code.ToString(), detail);
            }

            w.WriteEndObject();
            w.WriteNumber("rejections", Rejections);
            w.WriteNumber("stalls", Stalls);
            w.WriteBoolean("deadlocked", Deadlocked);
            w.WriteNumber("peak_rss_mib", PeakRssBytes >> 20);
            w.WriteNumber("cpu_budget_mib", CpuBudgetBytes >> 20);
            w.WriteNumber("overhead_mib", OverheadBytes >> 20);
            w.WriteNumber("server_cpu_tier_mib", Server.CpuTierBytes >> 20);
            w.WriteNumber("server_disk_tier_mib", Server.DiskTierBytes >> 20);
            w.WriteNumber("server_contexts", Server.Contexts);
            w.WriteNumber("server_managed_heap_mib", Server.ManagedHeapBytes >> 20);
            w.WriteBoolean("passed", Passed);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}

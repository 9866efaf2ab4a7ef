using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvDb.Server.Security;

/// <summary>One audit entry: who did what to what, from where, when, and how it ended.</summary>
public sealed record AuditEntry(long Sequence, long UnixMs, string Actor, string Peer, string Action, string Target, string Outcome);

/// <summary>
/// Append-only record of admin actions (every Admin and Tenants call) and failed authentications. With a data
/// directory each entry is one JSON line of DATA/audit.log, written and flushed to disk before the call's answer; the
/// last <see cref="Retained"/> entries are also kept in memory for <c>Admin.ReadAudit</c>. Nothing rewrites or deletes
/// the file. Failed authentications are bounded by the authenticator's per-address throttle, so the log cannot be
/// flooded faster than that. Thread-safe.
/// </summary>
public sealed class AuditLog : IDisposable
{
    /// <summary>The file under the data directory.</summary>
    public const string FileName = "audit.log";

    /// <summary>Entries kept in memory for reading back.</summary>
    public const int Retained = 10_000;

    private readonly Lock _gate = new();
    private readonly FileStream? _file;
    private readonly Queue<AuditEntry> _recent = new();
    private long _sequence;

    private AuditLog(FileStream? file, long sequence, IEnumerable<AuditEntry> recent)
    {
        _file = file;
        _sequence = sequence;
        foreach (AuditEntry e in recent)
        {
            Keep(e);
        }
    }

    /// <summary>Opens (or starts) the log of <paramref name="dataDirectory"/>; memory only without one.</summary>
    public static AuditLog Open(string? dataDirectory)
    {
        if (dataDirectory is null)
        {
            return new AuditLog(null, 0, []);
        }

        Directory.CreateDirectory(dataDirectory);
        string path = Path.Combine(dataDirectory, FileName);
        var recent = new List<AuditEntry>();
        long sequence = 0;
        if (File.Exists(path))
        {
            foreach (string line in File.ReadLines(path))
            {
                // A torn last line (crash mid-write) is skipped; every complete line is kept.
                AuditEntry? e = TryParse(line);
                if (e is not null)
                {
                    recent.Add(e);
                    sequence = Math.Max(sequence, e.Sequence);
                }
            }
        }

        var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        return new AuditLog(file, sequence, recent.Count > Retained ? recent.GetRange(recent.Count - Retained, Retained) : recent);
    }

    /// <summary>Appends an entry (durable before this returns when there is a file).</summary>
    public AuditEntry Write(string actor, string peer, string action, string target, string outcome)
    {
        lock (_gate)
        {
            var e = new AuditEntry(++_sequence, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), actor, peer, action, target, outcome);
            if (_file is not null)
            {
                byte[] line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(e, AuditJson.Default.AuditEntry) + "\n");
                _file.Write(line);
                _file.Flush(flushToDisk: true);
            }

            Keep(e);
            return e;
        }
    }

    /// <summary>Up to <paramref name="limit"/> retained entries with a sequence above <paramref name="after"/>, oldest first.</summary>
    public IReadOnlyList<AuditEntry> Read(long after, int limit)
    {
        lock (_gate)
        {
            var entries = new List<AuditEntry>(Math.Min(limit, _recent.Count));
            foreach (AuditEntry e in _recent)
            {
                if (e.Sequence > after && entries.Count < limit)
                {
                    entries.Add(e);
                }
            }

            return entries;
        }
    }

    public void Dispose() => _file?.Dispose();

    private static AuditEntry? TryParse(string line)
    {
        try
        {
            return JsonSerializer.Deserialize(line, AuditJson.Default.AuditEntry);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private void Keep(AuditEntry e)
    {
        _recent.Enqueue(e);
        if (_recent.Count > Retained)
        {
            _recent.Dequeue();
        }
    }
}

[JsonSerializable(typeof(AuditEntry))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class AuditJson : JsonSerializerContext;

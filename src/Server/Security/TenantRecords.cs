using System.Text.Json.Serialization;

namespace KvDb.Server.Security;

/// <summary>A tenant as stored in DATA/tenants.json.</summary>
public sealed class TenantRecord
{
    public required string Name { get; init; }

    public bool Admin { get; init; }

    public long CreatedUnixMs { get; init; }

    public List<ApiKeyRecord> Keys { get; init; } = [];

    public QuotaRecord Quota { get; set; } = new();

    public List<string> Grants { get; init; } = [];
}

/// <summary>A tenant's limits; 0 = unlimited.</summary>
public sealed record QuotaRecord
{
    public long Bytes { get; init; }

    public long Contexts { get; init; }

    public int Streams { get; init; }

    public double RequestsPerSecond { get; init; }

    /// <summary>Guaranteed CPU-tier bytes: under memory pressure, blocks of tenants above their share are demoted first.</summary>
    public long CpuBytes { get; init; }
}

/// <summary>One API key of a tenant: its public id and the salted hash of its secret (never the secret).</summary>
public sealed class ApiKeyRecord
{
    public required string KeyId { get; init; }

    public required byte[] Salt { get; init; }

    public required byte[] Hash { get; init; }

    public long CreatedUnixMs { get; init; }

    public long RevokedUnixMs { get; set; }
}

/// <summary>The file's root: a format version and the tenants.</summary>
public sealed class TenantFile
{
    public int Format { get; init; } = 1;

    public List<TenantRecord> Tenants { get; init; } = [];
}

[JsonSerializable(typeof(TenantFile))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class TenantFileJson : JsonSerializerContext;

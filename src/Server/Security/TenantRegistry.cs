using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace KvDb.Server.Security;

/// <summary>
/// Tenants and their API keys. With a data directory they are durable: every change rewrites DATA/tenants.json
/// (written to a temporary file, fsynced, then renamed over the old one) before the call that made it returns, so an
/// acknowledged tenant or key survives a crash and a torn write leaves the previous file. Without one they live in
/// memory, like the contexts. Thread-safe.
/// </summary>
public sealed partial class TenantRegistry
{
    /// <summary>The file under the data directory.</summary>
    public const string FileName = "tenants.json";

    private readonly Lock _gate = new();
    private readonly string? _path;
    private readonly Dictionary<string, TenantRecord> _tenants = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (TenantRecord Tenant, ApiKeyRecord Key)> _keys = new(StringComparer.Ordinal);

    private TenantRegistry(string? path)
    {
        _path = path;
    }

    /// <summary>Loads the registry of <paramref name="dataDirectory"/> (empty when it has none yet), or an in-memory one.</summary>
    public static TenantRegistry Open(string? dataDirectory)
    {
        string? path = dataDirectory is null ? null : Path.Combine(dataDirectory, FileName);
        var registry = new TenantRegistry(path);
        if (path is not null && File.Exists(path))
        {
            TenantFile file = JsonSerializer.Deserialize(File.ReadAllBytes(path), TenantFileJson.Default.TenantFile)
                ?? throw new InvalidDataException($"{path} is empty or not a tenant file");
            foreach (TenantRecord t in file.Tenants)
            {
                registry.Add(t);
            }
        }

        return registry;
    }

    /// <summary>True when <paramref name="name"/> is a valid tenant name: [a-z0-9][a-z0-9_-]{0,62}.</summary>
    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    /// <summary>Number of tenants.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _tenants.Count;
            }
        }
    }

    /// <summary>Creates a tenant with one key; returns it and the key (shown once).</summary>
    public (TenantRecord Tenant, string Key) CreateTenant(string name, bool admin)
    {
        if (!IsValidName(name))
        {
            throw KvDbException.Invalid($"tenant name \"{name}\" is not valid; use 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit");
        }

        lock (_gate)
        {
            if (_tenants.ContainsKey(name))
            {
                throw new KvDbException(KvDbErrorCode.AlreadyExists, $"tenant \"{name}\" already exists; add a key with CreateApiKey or pick another name");
            }

            var tenant = new TenantRecord { Name = name, Admin = admin, CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
            (ApiKeyRecord record, string key) = NewKey();
            tenant.Keys.Add(record);
            Add(tenant);
            Save(() => Remove(name));
            return (tenant, key);
        }
    }

    /// <summary>Adds a key to <paramref name="tenant"/>; returns it and the key (shown once).</summary>
    public (ApiKeyRecord Key, string Secret) CreateKey(string tenant)
    {
        lock (_gate)
        {
            TenantRecord t = Find(tenant);
            (ApiKeyRecord record, string key) = NewKey();
            t.Keys.Add(record);
            _keys.Add(record.KeyId, (t, record));
            Save(() =>
            {
                t.Keys.Remove(record);
                _keys.Remove(record.KeyId);
            });
            return (record, key);
        }
    }

    /// <summary>Revokes a key by its id; false when no active key has that id.</summary>
    public bool RevokeKey(string keyId)
    {
        lock (_gate)
        {
            if (!_keys.TryGetValue(keyId, out (TenantRecord Tenant, ApiKeyRecord Key) entry) || entry.Key.RevokedUnixMs != 0)
            {
                return false;
            }

            entry.Key.RevokedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            Save(() => entry.Key.RevokedUnixMs = 0);
            return true;
        }
    }

    /// <summary>Replaces a tenant's quota; returns the tenant.</summary>
    public TenantRecord SetQuota(string tenant, QuotaRecord quota)
    {
        if (quota.Bytes < 0 || quota.CpuBytes < 0 || quota.Contexts < 0 || quota.Streams < 0 || !(quota.RequestsPerSecond >= 0) || double.IsInfinity(quota.RequestsPerSecond))
        {
            throw KvDbException.Invalid($"quota values must be ≥ 0 (0 = unlimited) and finite, got {quota}");
        }

        lock (_gate)
        {
            TenantRecord t = Find(tenant);
            QuotaRecord old = t.Quota;
            t.Quota = quota;
            Save(() => t.Quota = old);
            return t;
        }
    }

    /// <summary>Grants (or with <paramref name="revoke"/> takes away) the shared namespace <paramref name="ns"/> ("@NAME"); returns the tenant.</summary>
    public TenantRecord Grant(string tenant, string ns, bool revoke)
    {
        if (!IsSharedNamespace(ns))
        {
            throw KvDbException.Invalid($"shared namespace \"{ns}\" is not valid; send \"@NAME\" with NAME of 1-63 characters of a-z, 0-9, '_' and '-'");
        }

        lock (_gate)
        {
            TenantRecord t = Find(tenant);
            bool has = t.Grants.Contains(ns);
            if (revoke == !has)
            {
                return t;
            }

            if (revoke)
            {
                t.Grants.Remove(ns);
                Save(() => t.Grants.Add(ns));
            }
            else
            {
                t.Grants.Add(ns);
                Save(() => t.Grants.Remove(ns));
            }

            return t;
        }
    }

    /// <summary>True when <paramref name="tenant"/> holds a grant on the shared namespace <paramref name="ns"/>.</summary>
    public bool HasGrant(string tenant, string ns)
    {
        lock (_gate)
        {
            return _tenants.TryGetValue(tenant, out TenantRecord? t) && t.Grants.Contains(ns);
        }
    }

    /// <summary>True for "@NAME" with NAME a valid tenant name.</summary>
    public static bool IsSharedNamespace(string ns) => ns.Length > 1 && ns[0] == '@' && IsValidName(ns[1..]);

    /// <summary>The tenant's quota (unlimited when the tenant does not exist: its calls fail authentication anyway).</summary>
    public QuotaRecord QuotaOf(string tenant)
    {
        lock (_gate)
        {
            return _tenants.TryGetValue(tenant, out TenantRecord? t) ? t.Quota : new QuotaRecord();
        }
    }

    /// <summary>Deletes a tenant and every key of it; false when it did not exist.</summary>
    public bool DeleteTenant(string name)
    {
        lock (_gate)
        {
            if (!_tenants.TryGetValue(name, out TenantRecord? t))
            {
                return false;
            }

            Remove(name);
            Save(() => Add(t));
            return true;
        }
    }

    /// <summary>A snapshot of every tenant, by name.</summary>
    public IReadOnlyList<TenantRecord> List()
    {
        lock (_gate)
        {
            var list = new List<TenantRecord>(_tenants.Values);
            list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            return list;
        }
    }

    /// <summary>True when the tenant exists.</summary>
    public bool Exists(string name)
    {
        lock (_gate)
        {
            return _tenants.ContainsKey(name);
        }
    }

    /// <summary>The principal an active key belongs to, or null (unknown id, wrong secret, revoked, malformed).</summary>
    public Principal? Authenticate(string key)
    {
        if (!ApiKey.TryParse(key, out string keyId, out string secret))
        {
            return null;
        }

        TenantRecord tenant;
        ApiKeyRecord record;
        lock (_gate)
        {
            if (!_keys.TryGetValue(keyId, out (TenantRecord Tenant, ApiKeyRecord Key) entry))
            {
                return null;
            }

            (tenant, record) = entry;
            if (record.RevokedUnixMs != 0)
            {
                return null;
            }
        }

        return ApiKey.Matches(record.Salt, record.Hash, secret) ? new Principal(tenant.Name, tenant.Admin) : null;
    }

    private static (ApiKeyRecord Record, string Key) NewKey()
    {
        (string keyId, string key) = ApiKey.Create();
        if (!ApiKey.TryParse(key, out _, out string secret))
        {
            throw new InvalidOperationException("a new API key does not parse");
        }

        byte[] salt = RandomNumberGenerator.GetBytes(16);
        return (new ApiKeyRecord { KeyId = keyId, Salt = salt, Hash = ApiKey.Hash(salt, secret), CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() }, key);
    }

    private TenantRecord Find(string name) =>
        _tenants.TryGetValue(name, out TenantRecord? t) ? t : throw KvDbException.NotFound($"tenant \"{name}\" does not exist; list them with ListTenants");

    private void Add(TenantRecord tenant)
    {
        _tenants.Add(tenant.Name, tenant);
        foreach (ApiKeyRecord key in tenant.Keys)
        {
            _keys.Add(key.KeyId, (tenant, key));
        }
    }

    private void Remove(string name)
    {
        if (_tenants.Remove(name, out TenantRecord? t))
        {
            foreach (ApiKeyRecord key in t.Keys)
            {
                _keys.Remove(key.KeyId);
            }
        }
    }

    /// <summary>Writes the file (under the gate); on failure undoes the change in memory and rethrows, so memory never holds what the disk does not.</summary>
    private void Save(Action undo)
    {
        if (_path is null)
        {
            return;
        }

        try
        {
            var file = new TenantFile { Tenants = [.. _tenants.Values] };
            byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(file, TenantFileJson.Default.TenantFile);
            string temp = _path + ".tmp";
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, _path, overwrite: true);
        }
        catch
        {
            undo();
            throw;
        }
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9_-]{0,62}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();
}

using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace KvDb.Server.Security;

/// <summary>
/// Decides who a call is from its <c>authorization: Bearer &lt;key&gt;</c> metadata: the bootstrap admin key
/// (<c>KVDB_ADMIN_KEY</c> / <c>--admin-key-file</c>), a tenant's key, or — only when no admin key is configured, which
/// limits the server to loopback — nobody needed (<see cref="Principal.Open"/>). Every failure answers the same
/// UNAUTHENTICATED message, whatever was wrong, and a peer that keeps failing is slowed down: after
/// <see cref="FailuresPerWindow"/> (configurable) failures within <see cref="FailureWindow"/> its calls get RESOURCE_EXHAUSTED until the
/// window ends, before any key is looked at.
/// </summary>
public sealed class Authenticator
{
    /// <summary>Failed authentications a peer may make per window, by default.</summary>
    public const int FailuresPerWindow = 32;

    /// <summary>The window failures are counted over.</summary>
    public static readonly TimeSpan FailureWindow = TimeSpan.FromSeconds(10);

    /// <summary>The message of every failed authentication (which part was wrong is not said).</summary>
    public const string FailureMessage = "missing or invalid API key: send metadata \"authorization: Bearer <key>\" with a key made by `kvdb tenant create` (or the admin key)";

    private readonly byte[]? _adminSalt;
    private readonly byte[]? _adminHash;
    private readonly ConcurrentDictionary<string, (long WindowStart, int Failures)> _failures = new(StringComparer.Ordinal);

    private readonly int _failuresPerWindow;

    /// <summary>Creates the authenticator; <paramref name="adminKey"/> null or empty runs open.</summary>
    public Authenticator(TenantRegistry tenants, string? adminKey, int failuresPerWindow = FailuresPerWindow)
    {
        Tenants = tenants;
        _failuresPerWindow = failuresPerWindow > 0 ? failuresPerWindow : FailuresPerWindow;
        if (!string.IsNullOrEmpty(adminKey))
        {
            _adminSalt = System.Security.Cryptography.RandomNumberGenerator.GetBytes(16);
            _adminHash = ApiKey.Hash(_adminSalt, adminKey);
        }
    }

    /// <summary>True when every call must present a key (an admin key is configured).</summary>
    public bool Required => _adminHash is not null;

    /// <summary>The tenants whose keys are accepted.</summary>
    public TenantRegistry Tenants { get; }

    /// <summary>The principal of a call, or an <see cref="RpcException"/> (UNAUTHENTICATED / RESOURCE_EXHAUSTED).</summary>
    public Principal Authenticate(ServerCallContext context)
    {
        string peer = PeerOf(context);
        if (Throttled(peer))
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"too many failed authentications from this peer; wait {FailureWindow.TotalSeconds:F0} s and send a valid key"));
        }

        string? header = null;
        foreach (Metadata.Entry entry in context.RequestHeaders)
        {
            if (!entry.IsBinary && string.Equals(entry.Key, "authorization", StringComparison.OrdinalIgnoreCase))
            {
                header = entry.Value;
                break;
            }
        }

        if (header is null)
        {
            return Required ? Fail(peer) : Principal.Open;
        }

        return Resolve(header) ?? Fail(peer);
    }

    /// <summary>
    /// The caller's address (per address, not per connection: a client that reconnects for every guess is still one
    /// peer).
    /// </summary>
    public static string PeerOf(ServerCallContext context) =>
        context.GetHttpContext().Connection.RemoteIpAddress?.ToString() ?? context.Peer ?? string.Empty;

    /// <summary>The principal of an authorization value ("Bearer KEY"), or null.</summary>
    public Principal? Resolve(string header)
    {
        if (header.Length > ApiKey.MaxLength + 16 || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        string key = header[7..].Trim();
        if (_adminHash is not null && ApiKey.Matches(_adminSalt!, _adminHash, key))
        {
            return Principal.BootstrapAdmin;
        }

        return Tenants.Authenticate(key);
    }

    private Principal Fail(string peer)
    {
        long now = Stopwatch.GetTimestamp();
        _failures.AddOrUpdate(
            peer,
            _ => (now, 1),
            (_, old) => Stopwatch.GetElapsedTime(old.WindowStart, now) > FailureWindow ? (now, 1) : (old.WindowStart, old.Failures + 1));
        throw new RpcException(new Status(StatusCode.Unauthenticated, FailureMessage));
    }

    private bool Throttled(string peer)
    {
        if (!_failures.TryGetValue(peer, out (long WindowStart, int Failures) f))
        {
            return false;
        }

        if (Stopwatch.GetElapsedTime(f.WindowStart) > FailureWindow)
        {
            _failures.TryRemove(peer, out _);
            return false;
        }

        return f.Failures >= _failuresPerWindow;
    }
}

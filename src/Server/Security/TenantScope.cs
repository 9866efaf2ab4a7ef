namespace KvDb.Server.Security;

/// <summary>
/// Maps a tenant's ids and namespaces to the store's. A tenant's context "c1" is stored as "tenant:c1" and its namespace
/// "n" as "tenant:n" (the empty namespace as "tenant:"), so a tenant can name only its own contexts and its prefix
/// chains are salted by a namespace it cannot choose: another tenant's context answers exactly as one that does not
/// exist. Tenants may not use ':' in ids and namespaces; the global scope (admin key, open server) uses them as sent.
/// Shared namespaces ("@NAME") are stored as sent and open to the tenants an admin granted them to.
/// </summary>
public static class TenantScope
{
    private const char Separator = ':';

    /// <summary>The store id of the caller's context <paramref name="id"/> (empty stays empty: the store assigns or rejects it).</summary>
    public static string ContextId(Principal p, string id)
    {
        if (p.Tenant is null || id.Length == 0)
        {
            return id;
        }

        Check("context id", id);
        return p.Tenant + Separator + id;
    }

    /// <summary>A new context's store id: the caller's <paramref name="id"/>, or a fresh one when it is empty.</summary>
    public static string NewContextId(Principal p, string id) =>
        p.Tenant is not null && id.Length == 0 ? ContextId(p, "ctx-" + Guid.NewGuid().ToString("N")) : ContextId(p, id);

    /// <summary>
    /// The store namespace of the caller's namespace <paramref name="ns"/>: its own ("tenant:ns"), or a shared one
    /// ("@NAME", stored as sent) when <paramref name="tenants"/> holds the caller's grant on it (PERMISSION_DENIED otherwise).
    /// </summary>
    public static string Namespace(Principal p, string ns, TenantRegistry tenants)
    {
        if (p.Tenant is null)
        {
            return ns;
        }

        if (ns.StartsWith('@'))
        {
            if (!TenantRegistry.IsSharedNamespace(ns) || !tenants.HasGrant(p.Tenant, ns))
            {
                throw new Grpc.Core.RpcException(new Grpc.Core.Status(Grpc.Core.StatusCode.PermissionDenied, $"tenant {p.Tenant} has no grant on shared namespace \"{ns}\"; an admin grants it with `kvdb tenant grant {p.Tenant} {ns}`"));
            }

            return ns;
        }

        Check("namespace", ns);
        return p.Tenant + Separator + ns;
    }

    /// <summary>The prefix of every store id the caller may see ("" for the global scope).</summary>
    public static string IdPrefix(Principal p) => p.Tenant is null ? string.Empty : p.Tenant + Separator;

    /// <summary>A store id or namespace as the caller knows it.</summary>
    public static string Public(Principal p, string stored)
    {
        string prefix = IdPrefix(p);
        return prefix.Length > 0 && stored.StartsWith(prefix, StringComparison.Ordinal) ? stored[prefix.Length..] : stored;
    }

    /// <summary><paramref name="message"/> with the caller's quoted store ids written as the caller sent them.</summary>
    public static string Unscope(Principal p, string message) =>
        p.Tenant is null ? message : message.Replace("\"" + IdPrefix(p), "\"", StringComparison.Ordinal);

    private static void Check(string what, string value)
    {
        if (value.Contains(Separator, StringComparison.Ordinal))
        {
            throw KvDbException.Invalid($"{what} \"{value}\" contains ':', which tenant keys may not use (it separates the tenant from its ids); send one without ':'");
        }
    }
}

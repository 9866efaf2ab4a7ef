namespace KvDb.Server.Security;

/// <summary>
/// Who a call acts for. <see cref="Tenant"/> null is the global scope (the bootstrap admin key, or every caller of a
/// server running open on loopback): ids and namespaces are used as sent. A tenant's calls see only its own contexts
/// and namespaces (<see cref="TenantScope"/>). <see cref="IsAdmin"/> allows the Admin and Tenants services.
/// </summary>
public sealed record Principal(string? Tenant, bool IsAdmin)
{
    /// <summary>Every caller of a server without an admin key (it listens on loopback only).</summary>
    public static Principal Open { get; } = new(null, true) { Actor = "open" };

    /// <summary>The caller holding the bootstrap admin key.</summary>
    public static Principal BootstrapAdmin { get; } = new(null, true) { Actor = "admin-key" };

    /// <summary>Who, as the audit log writes it: "open", "admin-key" or "tenant:NAME".</summary>
    public string Actor { get; init; } = Tenant is null ? "open" : "tenant:" + Tenant;
}

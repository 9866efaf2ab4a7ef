using Grpc.Core;
using KvDb.Protocol.V1;
using KvDb.QueryEngine.Execution;
using KvDb.Server.Security;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Tenants: tenants and their API keys (admin keys only; <see cref="AuthInterceptor"/> checks).</summary>
public sealed class TenantsService : Tenants.TenantsBase
{
    private readonly TenantRegistry _tenants;
    private readonly IKvStore _store;
    private readonly AttentionExecutor _executor;
    private readonly TenantQuotas _quotas;

    /// <summary>Creates the service.</summary>
    public TenantsService(Authenticator authenticator, IKvStore store, AttentionExecutor executor, TenantQuotas quotas)
    {
        _tenants = authenticator.Tenants;
        _store = store;
        _executor = executor;
        _quotas = quotas;
    }

    /// <inheritdoc />
    public override Task<Tenant> SetQuota(SetQuotaRequest request, ServerCallContext context)
    {
        Quota q = request.Quota ?? new Quota();
        TenantRecord t = _tenants.SetQuota(request.Tenant, new QuotaRecord { Bytes = q.Bytes, Contexts = q.Contexts, Streams = q.Streams, RequestsPerSecond = q.RequestsPerSecond, CpuBytes = q.CpuBytes });
        return Task.FromResult(WithUsage(t));
    }

    /// <inheritdoc />
    public override Task<CreateTenantResponse> CreateTenant(CreateTenantRequest request, ServerCallContext context)
    {
        (TenantRecord tenant, string key) = _tenants.CreateTenant(request.Name, request.Admin);
        return Task.FromResult(new CreateTenantResponse { Tenant = ToWire(tenant), ApiKey = key });
    }

    /// <inheritdoc />
    public override Task<Tenant> Grant(GrantRequest request, ServerCallContext context) =>
        Task.FromResult(WithUsage(_tenants.Grant(request.Tenant, request.Namespace, request.Revoke)));

    /// <inheritdoc />
    public override Task<ListTenantsResponse> ListTenants(ListTenantsRequest request, ServerCallContext context)
    {
        var response = new ListTenantsResponse();
        foreach (TenantRecord t in _tenants.List())
        {
            response.Tenants.Add(WithUsage(t));
        }

        return Task.FromResult(response);
    }

    /// <inheritdoc />
    /// <remarks>The tenant's keys stop working first, then its contexts are deleted.</remarks>
    public override Task<DeleteTenantResponse> DeleteTenant(DeleteTenantRequest request, ServerCallContext context)
    {
        if (!_tenants.DeleteTenant(request.Name))
        {
            throw KvDbException.NotFound($"tenant \"{request.Name}\" does not exist; list them with ListTenants");
        }

        foreach (ContextInfo c in TenantQuotas.ContextsOf(_store, request.Name).ToList())
        {
            _store.DeleteContext(c.Id);
            _executor.ForgetContext(c.Id);
        }

        return Task.FromResult(new DeleteTenantResponse { Deleted = true });
    }

    /// <inheritdoc />
    public override Task<CreateApiKeyResponse> CreateApiKey(CreateApiKeyRequest request, ServerCallContext context)
    {
        (ApiKeyRecord key, string secret) = _tenants.CreateKey(request.Tenant);
        return Task.FromResult(new CreateApiKeyResponse { Key = ToWire(key), ApiKey = secret });
    }

    /// <inheritdoc />
    public override Task<RevokeApiKeyResponse> RevokeApiKey(RevokeApiKeyRequest request, ServerCallContext context)
    {
        if (!_tenants.RevokeKey(request.KeyId))
        {
            throw KvDbException.NotFound($"no active key has id \"{request.KeyId}\"; ListTenants shows each tenant's key ids");
        }

        return Task.FromResult(new RevokeApiKeyResponse { Revoked = true });
    }

    private Tenant WithUsage(TenantRecord t)
    {
        Tenant tenant = ToWire(t);
        (long bytes, long contexts, int streams) = _quotas.Usage(t.Name);
        tenant.Usage = new Usage { Bytes = bytes, Contexts = contexts, Streams = streams, CpuBytes = _quotas.ResidentBytes(t.Name) };
        return tenant;
    }

    private static Tenant ToWire(TenantRecord t)
    {
        var tenant = new Tenant
        {
            Name = t.Name,
            Admin = t.Admin,
            CreatedUnixMs = t.CreatedUnixMs,
            Quota = new Quota { Bytes = t.Quota.Bytes, Contexts = t.Quota.Contexts, Streams = t.Quota.Streams, RequestsPerSecond = t.Quota.RequestsPerSecond, CpuBytes = t.Quota.CpuBytes },
        };
        tenant.Grants.Add(t.Grants);
        foreach (ApiKeyRecord k in t.Keys)
        {
            tenant.Keys.Add(ToWire(k));
        }

        return tenant;
    }

    private static ApiKeyInfo ToWire(ApiKeyRecord k) => new() { KeyId = k.KeyId, CreatedUnixMs = k.CreatedUnixMs, RevokedUnixMs = k.RevokedUnixMs };
}

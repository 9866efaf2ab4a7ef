using Grpc.Core;
using Grpc.Core.Interceptors;

namespace KvDb.Server.Security;

/// <summary>
/// Authenticates every call before any service sees it (health checks and reflection excepted: they reveal no data),
/// keeps the principal in the call's user state for the services, refuses the Admin and Tenants services to callers
/// without an admin key (PERMISSION_DENIED), and rewrites a tenant's error messages so they name its ids as it sent them.
/// </summary>
public sealed class AuthInterceptor : Interceptor
{
    private const string PrincipalKey = "kvdb.principal";

    private readonly Authenticator _authenticator;
    private readonly AuditLog _audit;
    private readonly TenantQuotas _quotas;

    /// <summary>
    /// Creates the interceptor; admin actions and failed authentications go to <paramref name="audit"/>, and a tenant's
    /// requests per second and concurrent streams are held to its quota by <paramref name="quotas"/>.
    /// </summary>
    public AuthInterceptor(Authenticator authenticator, AuditLog audit, TenantQuotas quotas)
    {
        _authenticator = authenticator;
        _audit = audit;
        _quotas = quotas;
    }

    /// <summary>The principal <see cref="AuthInterceptor"/> attached to <paramref name="context"/> (open when none: in-process calls in tests).</summary>
    public static Principal PrincipalOf(ServerCallContext context) =>
        context.UserState.TryGetValue(PrincipalKey, out object? p) && p is Principal principal ? principal : Principal.Open;

    /// <inheritdoc />
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Principal p = Admit(context);
        bool audited = IsAudited(context.Method);
        try
        {
            TResponse response = await continuation(request, context).ConfigureAwait(false);
            if (audited)
            {
                _audit.Write(p.Actor, Authenticator.PeerOf(context), context.Method, Describe(request), "OK");
            }

            return response;
        }
        catch (Exception e) when (audited)
        {
            _audit.Write(p.Actor, Authenticator.PeerOf(context), context.Method, Describe(request), e is RpcException r ? r.StatusCode.ToString() : e.GetType().Name);
            throw;
        }
        catch (RpcException e) when (p.Tenant is not null)
        {
            throw Scoped(e, p);
        }
    }

    /// <inheritdoc />
    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Principal p = Admit(context);
        using IDisposable stream = _quotas.OpenStream(p);
        try
        {
            return await continuation(requestStream, context).ConfigureAwait(false);
        }
        catch (RpcException e) when (p.Tenant is not null)
        {
            throw Scoped(e, p);
        }
    }

    /// <inheritdoc />
    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Principal p = Admit(context);
        using IDisposable stream = _quotas.OpenStream(p);
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (RpcException e) when (p.Tenant is not null)
        {
            throw Scoped(e, p);
        }
    }

    /// <inheritdoc />
    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Principal p = Admit(context);
        using IDisposable stream = _quotas.OpenStream(p);
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (RpcException e) when (p.Tenant is not null)
        {
            throw Scoped(e, p);
        }
    }

    private Principal Admit(ServerCallContext context)
    {
        string method = context.Method ?? string.Empty;
        if (method.StartsWith("/grpc.health.", StringComparison.Ordinal) || method.StartsWith("/grpc.reflection.", StringComparison.Ordinal))
        {
            return Principal.Open;
        }

        Principal p;
        try
        {
            p = _authenticator.Authenticate(context);
        }
        catch (RpcException e)
        {
            _audit.Write("unauthenticated", Authenticator.PeerOf(context), method, string.Empty, e.StatusCode.ToString());
            throw;
        }

        if (!p.IsAdmin && (method.StartsWith("/kvdb.v1.Admin/", StringComparison.Ordinal) || method.StartsWith("/kvdb.v1.Tenants/", StringComparison.Ordinal)))
        {
            _audit.Write(p.Actor, Authenticator.PeerOf(context), method, string.Empty, nameof(StatusCode.PermissionDenied));
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"{method} needs an admin key; tenant keys reach Models, Contexts and Attention"));
        }

        _quotas.Request(p);
        context.UserState[PrincipalKey] = p;
        return p;
    }

    /// <summary>Admin actions: every Tenants call and the Admin calls that change something (reads are not logged).</summary>
    private static bool IsAudited(string method) =>
        method.StartsWith("/kvdb.v1.Tenants/", StringComparison.Ordinal)
        || method is "/kvdb.v1.Admin/Evict" or "/kvdb.v1.Admin/Checkpoint" or "/kvdb.v1.Admin/Compact";

    /// <summary>The request as the audit log shows it (protobuf JSON, bounded; requests of audited calls carry no key).</summary>
    private static string Describe(object? request)
    {
        string text = request?.ToString() ?? string.Empty;
        return text.Length <= 256 ? text : text[..256];
    }

    /// <summary>The same status with the tenant's prefix taken out of the ids its message names.</summary>
    private static RpcException Scoped(RpcException e, Principal p) =>
        new(new Status(e.StatusCode, TenantScope.Unscope(p, e.Status.Detail)), e.Trailers);
}

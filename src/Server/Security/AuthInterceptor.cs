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

    /// <summary>Creates the interceptor.</summary>
    public AuthInterceptor(Authenticator authenticator)
    {
        _authenticator = authenticator;
    }

    /// <summary>The principal <see cref="AuthInterceptor"/> attached to <paramref name="context"/> (open when none: in-process calls in tests).</summary>
    public static Principal PrincipalOf(ServerCallContext context) =>
        context.UserState.TryGetValue(PrincipalKey, out object? p) && p is Principal principal ? principal : Principal.Open;

    /// <inheritdoc />
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Principal p = Admit(context);
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
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

        Principal p = _authenticator.Authenticate(context);
        if (!p.IsAdmin && (method.StartsWith("/kvdb.v1.Admin/", StringComparison.Ordinal) || method.StartsWith("/kvdb.v1.Tenants/", StringComparison.Ordinal)))
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"{method} needs an admin key; tenant keys reach Models, Contexts and Attention"));
        }

        context.UserState[PrincipalKey] = p;
        return p;
    }

    /// <summary>The same status with the tenant's prefix taken out of the ids its message names.</summary>
    private static RpcException Scoped(RpcException e, Principal p) =>
        new(new Status(e.StatusCode, TenantScope.Unscope(p, e.Status.Detail)), e.Trailers);
}

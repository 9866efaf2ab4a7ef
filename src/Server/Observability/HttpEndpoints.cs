using KvDb.Server.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Prometheus;

namespace KvDb.Server.Observability;

/// <summary>
/// The HTTP endpoint next to gRPC: <c>/metrics</c> (Prometheus text format; with an admin key configured it needs
/// <c>Authorization: Bearer &lt;admin key&gt;</c>, which Prometheus sends with <c>authorization.credentials</c>),
/// <c>/healthz</c> (the process answers) and <c>/readyz</c> (recovery done and the store open: true once the server
/// listens, since it opens the store before it starts listening). The dashboard at <c>/</c> is <see cref="Dashboard.DashboardApi"/>.
/// </summary>
public static class HttpEndpoints
{
    /// <summary>Maps the endpoints.</summary>
    public static void Map(WebApplication app, KvDbMetrics metrics, Authenticator authenticator)
    {
        app.MapGet("/healthz", () => Results.Text("ok\n"));
        app.MapGet("/readyz", () => Results.Text("ready\n"));
        app.MapGet("/metrics", async context =>
        {
            if (authenticator.Required && !IsAdmin(context, authenticator))
            {
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await context.Response.WriteAsync("send Authorization: Bearer <admin key>\n").ConfigureAwait(false);
                return;
            }

            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await metrics.Registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
        });
    }

    /// <summary>True when the request carries <c>Authorization: Bearer</c> with an admin key.</summary>
    internal static bool IsAdmin(HttpContext context, Authenticator authenticator)
    {
        string header = context.Request.Headers.Authorization.ToString();
        return header.Length > 0 && authenticator.Resolve(header) is { IsAdmin: true };
    }
}

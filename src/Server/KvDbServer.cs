using System.Net;
using System.Security.Cryptography.X509Certificates;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.Server.Observability;
using KvDb.Server.Security;
using KvDb.Server.Services;
using KvDb.Store;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;

namespace KvDb.Server;

/// <summary>Builds and starts the gRPC host: Models, Contexts, Attention, Admin, health and reflection on HTTP/2 cleartext.</summary>
public static class KvDbServer
{
    /// <summary>Console logging as the options ask: single-line text or one JSON object per entry (UTC timestamps).</summary>
    private static void ConfigureLogging(ILoggingBuilder logging, KvDbServerOptions options)
    {
        if (options.LogFormat == "json")
        {
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.IncludeScopes = false;
            });
        }
        else
        {
            logging.AddSimpleConsole(o => o.SingleLine = true);
        }

        logging.SetMinimumLevel(options.LogLevel);
    }

    /// <summary>Starts a server and returns once it listens.</summary>
    public static async Task<KvDbServerHandle> StartAsync(KvDbServerOptions options, CancellationToken cancellationToken = default)
    {
        if (options.LogFormat is not ("text" or "json"))
        {
            throw new InvalidOperationException($"log format must be \"text\" or \"json\", got \"{options.LogFormat}\"");
        }

        // Warnings by default: recovery problems and corruption reports must reach the operator's console.
        ILoggerFactory loggerFactory = LoggerFactory.Create(b => ConfigureLogging(b, options));
        var storeOptions = new StoreOptions
        {
            CpuBudgetBytes = options.CpuBudgetBytes,
            GpuBudgetBytes = options.GpuBudgetBytes,
            DataDirectory = options.DataDirectory,
            EvictionPolicy = options.EvictionPolicy,
            MaxPinnedFraction = options.MaxPinnedFraction,
            DiskReadFaults = options.DiskReadFaults,
            CompactionDeadRatio = options.CompactionDeadRatio,
            Logger = loggerFactory.CreateLogger("KvDb.Store"),
        };
        if (options.DiskReserveBytes >= 0)
        {
            storeOptions = storeOptions with { DiskReserveBytes = options.DiskReserveBytes };
        }

        if (options.CheckpointLogBytes > 0)
        {
            storeOptions = storeOptions with { CheckpointLogBytes = options.CheckpointLogBytes };
        }


        CheckExposure(options);

        // A data directory makes the store durable (write-ahead log, checkpoints, disk tier); without one it stays memory-only.
        IKvStore store = options.DataDirectory is null ? new InMemoryKvStore(storeOptions) : new KvStore(storeOptions);

        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        ConfigureLogging(builder.Logging, options);

        // ASP.NET Core's own per-request entries would double ours at Debug; keep its warnings.
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            IPAddress ip = options.Host is "localhost" ? IPAddress.Loopback : IPAddress.Parse(options.Host);
            X509Certificate2? certificate = ServerTls.LoadCertificate(options);
            X509Certificate2Collection? clientCas = ServerTls.LoadClientCas(options);
            k.Listen(ip, options.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (certificate is not null)
                {
                    listen.UseHttps(https => ServerTls.Configure(https, certificate, clientCas));
                }
            });
            if (options.HttpPort >= 0)
            {
                // The HTTP endpoint (metrics, health) for Prometheus, curl and browsers: HTTP/1.1, same TLS as gRPC.
                k.Listen(ip, options.HttpPort, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    if (certificate is not null)
                    {
                        listen.UseHttps(https => ServerTls.Configure(https, certificate, clientCas));
                    }
                });
            }
            k.Limits.MaxRequestBodySize = null;
        });

        builder.Services.AddSingleton(store);
        TenantRegistry tenants = TenantRegistry.Open(options.DataDirectory);
        if (store is KvStore tiered)
        {
            // A tenant's cpu_bytes quota is its guaranteed CPU-tier share: demotion takes others' surplus first.
            tiered.Blocks.ResidentShare = owner => tenants.QuotaOf(owner).CpuBytes;
        }

        builder.Services.AddSingleton(new Authenticator(tenants, options.AdminKey, options.AuthFailuresPerWindow));
        builder.Services.AddSingleton(_ => AuditLog.Open(options.DataDirectory));
        builder.Services.AddSingleton(new RecentCalls());
        var admission = new Admission.AdmissionControl(options);
        builder.Services.AddSingleton(admission);
        builder.Services.AddSingleton(new CallLogOptions(options.SlowCall));
        builder.Services.AddSingleton(sp => new TenantQuotas(sp.GetRequiredService<Authenticator>().Tenants, store));
        builder.Services.AddSingleton(sp => new KvDbMetrics(store, sp.GetRequiredService<Authenticator>().Tenants, sp.GetRequiredService<TenantQuotas>(), sp.GetRequiredService<AttentionExecutor>().Indexes, admission));
        // Registered by factory so the container disposes it (waiting for index builds) before the store is disposed.
        QueryEngine.Planning.CostModel costs = options.CalibrateCosts ? QueryEngine.Planning.CostModel.Calibrate() : QueryEngine.Planning.CostModel.Default;
        builder.Services.AddSingleton(_ => new AttentionExecutor(store, costs: costs, defaultQuality: options.DefaultQuality.Validated()));
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = options.MaxMessageBytes;
            o.MaxSendMessageSize = null;
            o.EnableDetailedErrors = false;
            // Metrics outermost (refused calls count too), then authentication: a call that fails it reaches no service,
            // and a tenant's errors come back scoped.
            if (options.CallMetrics)
            {
                o.Interceptors.Add<MetricsInterceptor>();
            }

            o.Interceptors.Add<AuthInterceptor>();
            o.Interceptors.Add<ErrorMappingInterceptor>();
        });
        // Health is answered from live checks rather than the periodic publisher's cache, so a client sees SERVING as soon as the port is open.
        builder.Services.AddGrpcHealthChecks(o => o.UseHealthChecksCache = false)
            .AddCheck("store", () => store.GetStats().CpuBytes <= store.GetStats().CpuBudgetBytes ? HealthCheckResult.Healthy() : HealthCheckResult.Degraded("CPU tier over budget"));
        builder.Services.AddGrpcReflection();
        // Our binder replaces Grpc.AspNetCore's (same methods, but a request that does not parse is INVALID_ARGUMENT, not UNKNOWN).
        builder.Services.RemoveAll(typeof(Grpc.AspNetCore.Server.Model.IServiceMethodProvider<>));
        builder.Services.AddSingleton(typeof(Grpc.AspNetCore.Server.Model.IServiceMethodProvider<>), typeof(ValidatingMethodProvider<>));

        WebApplication app = builder.Build();

        // Created now, not on the first attention request: with --data its catalog collects unreferenced index files at start.
        app.Services.GetRequiredService<AttentionExecutor>();
        app.MapGrpcService<ModelsService>();
        app.MapGrpcService<ContextsService>();
        app.MapGrpcService<AttentionService>();
        app.MapGrpcService<AdminService>();
        app.MapGrpcService<TenantsService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        HttpEndpoints.Map(app, app.Services.GetRequiredService<KvDbMetrics>(), app.Services.GetRequiredService<Authenticator>());
        Dashboard.DashboardApi.Map(app, store, app.Services.GetRequiredService<Authenticator>(), app.Services.GetRequiredService<RecentCalls>(), app.Services.GetRequiredService<TenantQuotas>(), app.Services.GetRequiredService<AttentionExecutor>());

        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            store.Dispose();
            loggerFactory.Dispose();
            throw;
        }

        // Kestrel lists the addresses in the order of the Listen calls: gRPC first, then HTTP.
        string[] addresses = [.. app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => a.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal))];
        return new KvDbServerHandle(app, store, app.Services.GetRequiredService<AttentionExecutor>(), admission, addresses[0], addresses.Length > 1 ? addresses[1] : null, loggerFactory);
    }

    /// <summary>True when <paramref name="host"/> names a loopback address ("localhost", 127.0.0.0/8, ::1).</summary>
    public static bool IsLoopback(string host) =>
        host is "localhost" || (IPAddress.TryParse(host, out IPAddress? ip) && IPAddress.IsLoopback(ip));

    /// <summary>An open server (no admin key) listens on loopback only, unless the operator says --insecure.</summary>
    private static void CheckExposure(KvDbServerOptions options)
    {
        if (options.IsOpen && !options.Insecure && !IsLoopback(options.Host))
        {
            throw new InvalidOperationException(
                $"refusing to listen on {options.Host} without an admin key: anyone reaching the port could read and delete every context. " +
                "Set KVDB_ADMIN_KEY (or --admin-key-file PATH), listen on 127.0.0.1, or pass --insecure to accept the risk");
        }
    }
}

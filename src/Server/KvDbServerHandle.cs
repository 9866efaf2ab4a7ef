using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.Store;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvDb.Server;

/// <summary>A running server: its address, its store, and how to stop it.</summary>
public sealed class KvDbServerHandle : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ILoggerFactory _loggerFactory;

    internal KvDbServerHandle(WebApplication app, IKvStore store, AttentionExecutor executor, Admission.AdmissionControl admission, string address, string? httpAddress, ILoggerFactory loggerFactory)
    {
        HttpAddress = httpAddress;
        Executor = executor;
        Admission = admission;
        _app = app;
        _loggerFactory = loggerFactory;
        Store = store;
        Address = address;
    }

    /// <summary>The URL clients connect to, e.g. "http://127.0.0.1:50051".</summary>
    public string Address { get; }

    /// <summary>The HTTP endpoint (/metrics, /healthz, /readyz), e.g. "http://127.0.0.1:50052"; null when it is off.</summary>
    public string? HttpAddress { get; }

    /// <summary>The store behind the server.</summary>
    public IKvStore Store { get; }

    /// <summary>The server's query executor (its index catalog, counters and sample queries).</summary>
    public AttentionExecutor Executor { get; }

    /// <summary>The admission limits: slots, waiting calls and refusals of Attend work and AppendKv streams.</summary>
    public Admission.AdmissionControl Admission { get; }

    /// <summary>Completes when the server stops.</summary>
    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    /// <summary>Stops the server and releases the store.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        Admission.Dispose();
        Store.Dispose();
        _loggerFactory.Dispose();
    }
}

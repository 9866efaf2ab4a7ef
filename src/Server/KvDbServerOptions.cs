namespace KvDb.Server;

/// <summary>How to run a KvDb server; the defaults serve on 127.0.0.1:50051 from memory.</summary>
public sealed record KvDbServerOptions
{
    /// <summary>Default gRPC port.</summary>
    public const int DefaultPort = 50051;

    /// <summary>Address to bind ("127.0.0.1", "0.0.0.0", "localhost", an IPv6 literal).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (read it back from <see cref="KvDbServerHandle.Address"/>).</summary>
    public int Port { get; init; } = DefaultPort;

    /// <summary>Directory for persistent data; null keeps everything in memory.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Bytes of K/V the CPU tier may hold; 0 = half of available memory.</summary>
    public long CpuBudgetBytes { get; init; }

    /// <summary>Bytes of device memory for the GPU tier; 0 = off (also off, with a log line, when CUDA is unavailable).</summary>
    public long GpuBudgetBytes { get; init; }

    /// <summary>How the CPU tier picks blocks to demote to disk: LRU (default) or TinyLFU (least frequently used among the coldest); see docs/storage.md.</summary>
    public Store.EvictionPolicy EvictionPolicy { get; init; } = Store.EvictionPolicy.Lru;

    /// <summary>The pin quota: the fraction of the CPU tier (and of the GPU tier for GPU pins) that context pins may hold together (0 to 1).</summary>
    public double MaxPinnedFraction { get; init; } = 0.5;

    /// <summary>With a data directory: take a checkpoint after this many bytes of write-ahead log; 0 = the store's default (512 MiB).</summary>
    public long CheckpointLogBytes { get; init; }

    /// <summary>With a data directory: bytes kept free on its filesystem; K/V writes that would go below are RESOURCE_EXHAUSTED. −1 = the store's default (64 MiB).</summary>
    public long DiskReserveBytes { get; init; } = -1;

    /// <summary>Test-only: faults injected into the disk tier's block reads (see <see cref="Store.IDiskReadFaults"/>).</summary>
    public Store.IDiskReadFaults? DiskReadFaults { get; init; }

    /// <summary>With a data directory: compact the disk block log automatically once this share of its records is dead (and at least 64 MiB); 0 = only on <c>Admin.Compact</c>.</summary>
    public double CompactionDeadRatio { get; init; } = 0.5;

    /// <summary>Largest gRPC message accepted (an AppendKv chunk or an Attend request).</summary>
    public int MaxMessageBytes { get; init; } = 64 << 20;

    /// <summary>AUTO's contract for requests that set none (plan.epsilon / plan.delta 0).</summary>
    public QueryEngine.QualityContract DefaultQuality { get; init; } = QueryEngine.QualityContract.Default;

    /// <summary>Measure read bandwidths at start for AUTO's cost model (about 50 ms); off uses conservative defaults.</summary>
    public bool CalibrateCosts { get; init; } = true;

    /// <summary>
    /// The bootstrap admin key (the CLI reads <c>KVDB_ADMIN_KEY</c> or <c>--admin-key-file</c>). Set: every call must
    /// present a key. Null or empty: the server runs open, and only on a loopback address unless <see cref="Insecure"/>.
    /// </summary>
    public string? AdminKey { get; init; }

    /// <summary>Allows an open server (no admin key) on a non-loopback address: anyone who reaches the port can read and delete everything.</summary>
    public bool Insecure { get; init; }

    /// <summary>True when the server will run open (no admin key).</summary>
    public bool IsOpen => string.IsNullOrEmpty(AdminKey);

    /// <summary>PEM certificate (chain) for TLS; with <see cref="TlsKeyPath"/> the server speaks gRPC over HTTPS only.</summary>
    public string? TlsCertificatePath { get; init; }

    /// <summary>PEM private key of <see cref="TlsCertificatePath"/>.</summary>
    public string? TlsKeyPath { get; init; }

    /// <summary>PEM CA certificate(s): with TLS on, clients must present a certificate issued by one of them (mTLS).</summary>
    public string? TlsClientCaPath { get; init; }

    /// <summary>True when TLS is configured.</summary>
    public bool UsesTls => !string.IsNullOrEmpty(TlsCertificatePath);

    /// <summary>Failed authentications one client address may make per 10 s before its calls are refused outright.</summary>
    public int AuthFailuresPerWindow { get; init; } = Security.Authenticator.FailuresPerWindow;

    /// <summary>The CLI's default HTTP port (metrics, health).</summary>
    public const int DefaultHttpPort = 50052;

    /// <summary>Port of the HTTP endpoint (/metrics, /healthz, /readyz): 0 picks a free one (read it from <see cref="KvDbServerHandle.HttpAddress"/>), −1 turns it off.</summary>
    public int HttpPort { get; init; }

    /// <summary>"text" (one line per entry) or "json" (one JSON object per line, for log shippers).</summary>
    public string LogFormat { get; init; } = "text";

    /// <summary>The least severe entries written: Warning by default; Debug adds a line per call.</summary>
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Warning;

    /// <summary>Count and time every call (Prometheus, the dashboard's recent calls, the call log); false only to measure what that costs.</summary>
    public bool CallMetrics { get; init; } = true;

    /// <summary>Calls slower than this are logged as warnings.</summary>
    public TimeSpan SlowCall { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Attend calls (and AttendStream messages) running at once; 0 = twice the cores, at least 4. More wait (see <see cref="AdmissionQueueFactor"/>) or are refused with RESOURCE_EXHAUSTED and a retry hint.</summary>
    public int MaxConcurrentAttends { get; init; }

    /// <summary>AppendKv streams open at once; 0 = four times the cores, at least 8.</summary>
    public int MaxConcurrentAppends { get; init; }

    /// <summary>Calls that may wait for a slot, as a multiple of the slots (0 = none wait: refused at once).</summary>
    public int AdmissionQueueFactor { get; init; } = 4;

    /// <summary>Longest a call waits for a slot before it is refused with RESOURCE_EXHAUSTED (its own deadline may end the wait sooner).</summary>
    public TimeSpan AdmissionWait { get; init; } = TimeSpan.FromSeconds(1);
}

using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using KvDb.Store;

namespace KvDb.Server.Security;

/// <summary>
/// Enforces tenants' quotas (<see cref="QuotaRecord"/>) and counts their usage. Bytes are the K/V bytes of a tenant's
/// contexts (<see cref="ContextInfo.Bytes"/>: every byte charged, shared or not) plus the bytes of its append
/// streams still in flight: a stream reserves each message's bytes before the store sees them, under the tenant's
/// lock, so concurrent streams racing for the last bytes never take the tenant over its limit, and a refused message
/// fails its stream before anything of it is committed (what was acknowledged before stays). Failures are
/// RESOURCE_EXHAUSTED with a <c>google.rpc.QuotaFailure</c> detail. Thread-safe.
/// <para>
/// The stored bytes are summed over the tenant's contexts at most once per <see cref="StoredRefresh"/> per tenant, not
/// per message: between sums, a committed stream adds its bytes to the cached figure, and deletions are seen at the
/// next sum, so the figure errs only on the high side (a quota is never exceeded, and may refuse early for up to
/// that long after a delete).
/// </para>
/// </summary>
public sealed class TenantQuotas
{
    private readonly TenantRegistry _tenants;
    private readonly IKvStore _store;
    private readonly ConcurrentDictionary<string, TenantState> _state = new(StringComparer.Ordinal);

    /// <summary>How long a tenant's summed stored bytes are reused by <see cref="Reserve"/>.</summary>
    public static readonly TimeSpan StoredRefresh = TimeSpan.FromSeconds(1);

    /// <summary>Creates the enforcer over the registry's quotas and the store's contexts.</summary>
    public TenantQuotas(TenantRegistry tenants, IKvStore store)
    {
        _tenants = tenants;
        _store = store;
    }

    /// <summary>The tenant's current usage (bytes include streams in flight).</summary>
    public (long Bytes, long Contexts, int Streams) Usage(string tenant)
    {
        TenantState s = State(tenant);
        lock (s.Gate)
        {
            (long bytes, long contexts) = Stored(tenant);
            return (bytes + s.ReservedBytes, contexts, s.Streams);
        }
    }

    /// <summary>
    /// Bytes of the tenant's blocks resident in the CPU tier: tracked per owner by a tiered store; a memory-only store
    /// keeps every stored byte resident.
    /// </summary>
    public long ResidentBytes(string tenant) => _store is KvStore tiered ? tiered.Blocks.ResidentBytes(tenant) : Stored(tenant).Bytes;

    /// <summary>Takes one request from the tenant's token bucket, or throws.</summary>
    public void Request(Principal p)
    {
        double rate = p.Tenant is null ? 0 : _tenants.QuotaOf(p.Tenant).RequestsPerSecond;
        if (p.Tenant is null || rate <= 0)
        {
            return;
        }

        TenantState s = State(p.Tenant);
        lock (s.Gate)
        {
            double burst = Math.Max(1, rate);
            long now = Stopwatch.GetTimestamp();
            s.Tokens = s.LastRefill == 0 ? burst : Math.Min(burst, s.Tokens + (Stopwatch.GetElapsedTime(s.LastRefill, now).TotalSeconds * rate));
            s.LastRefill = now;
            if (s.Tokens < 1)
            {
                throw Exceeded(p.Tenant, "requests_per_second", rate, rate, "wait and retry, or ask for a higher rate");
            }

            s.Tokens -= 1;
        }
    }

    /// <summary>Opens one of the tenant's concurrent streams (dispose to close it), or throws.</summary>
    public IDisposable OpenStream(Principal p)
    {
        if (p.Tenant is null)
        {
            return NoOp.Instance;
        }

        int limit = _tenants.QuotaOf(p.Tenant).Streams;
        TenantState s = State(p.Tenant);
        lock (s.Gate)
        {
            if (limit > 0 && s.Streams >= limit)
            {
                throw Exceeded(p.Tenant, "streams", limit, s.Streams, "close a stream first");
            }

            s.Streams++;
        }

        return new StreamLease(s);
    }

    /// <summary>Checks that the tenant may make one more context, or throws.</summary>
    public void NewContext(Principal p)
    {
        long limit = p.Tenant is null ? 0 : _tenants.QuotaOf(p.Tenant).Contexts;
        if (p.Tenant is null || limit <= 0)
        {
            return;
        }

        TenantState s = State(p.Tenant);
        lock (s.Gate)
        {
            long contexts = Stored(p.Tenant).Contexts;
            if (contexts >= limit)
            {
                throw Exceeded(p.Tenant, "contexts", limit, contexts, "delete a context first");
            }
        }
    }

    /// <summary>True when the store has no disk tier (no --data): the CPU tier holds every stored byte.</summary>
    private bool MemoryOnly => _store is not KvStore { Durable: true };

    /// <summary>Reserves <paramref name="bytes"/> for an append in flight, or throws; <see cref="Release"/> gives them back when the stream ends.</summary>
    public void Reserve(Principal p, long bytes)
    {
        if (p.Tenant is null)
        {
            return;
        }

        // Without a disk tier every stored byte is resident, so the CPU-tier quota bounds what may be stored too.
        QuotaRecord quota = _tenants.QuotaOf(p.Tenant);
        (string name, long limit) = (quota.Bytes, MemoryOnly ? quota.CpuBytes : 0) switch
        {
            ( > 0, > 0) when quota.CpuBytes < quota.Bytes => ("cpu_bytes", quota.CpuBytes),
            ( > 0, _) => ("bytes", quota.Bytes),
            (_, > 0) => ("cpu_bytes", quota.CpuBytes),
            _ => ("bytes", 0L),
        };
        if (limit <= 0)
        {
            return;
        }

        TenantState s = State(p.Tenant);
        lock (s.Gate)
        {
            if (s.StoredAt == 0 || Stopwatch.GetElapsedTime(s.StoredAt) > StoredRefresh)
            {
                s.StoredBytes = Stored(p.Tenant).Bytes;
                s.StoredAt = Stopwatch.GetTimestamp();
            }

            long used = s.StoredBytes + s.ReservedBytes;
            if (used + bytes > limit)
            {
                throw Exceeded(p.Tenant, name, limit, used, $"this message needs {bytes} more bytes; delete contexts or ask for a higher quota");
            }

            s.ReservedBytes += bytes;
        }
    }

    /// <summary>Gives back what a stream reserved; when it <paramref name="committed"/>, its bytes move to the cached stored figure.</summary>
    public void Release(Principal p, long bytes, bool committed)
    {
        if (p.Tenant is null || bytes == 0)
        {
            return;
        }

        TenantState s = State(p.Tenant);
        lock (s.Gate)
        {
            s.ReservedBytes = Math.Max(0, s.ReservedBytes - bytes);
            if (committed)
            {
                s.StoredBytes += bytes;
            }
        }
    }

    private (long Bytes, long Contexts) Stored(string tenant)
    {
        long bytes = 0;
        long contexts = 0;
        foreach (ContextInfo c in ContextsOf(_store, tenant))
        {
            bytes += c.Bytes;
            contexts++;
        }

        return (bytes, contexts);
    }

    /// <summary>Every context of <paramref name="tenant"/> in the store, page by page (a snapshot per page).</summary>
    public static IEnumerable<ContextInfo> ContextsOf(IKvStore store, string tenant)
    {
        string prefix = TenantScope.IdPrefix(new Principal(tenant, false));
        string token = string.Empty;
        do
        {
            ContextPage page = store.ListContexts(1000, token, prefix);
            foreach (ContextInfo c in page.Contexts)
            {
                yield return c;
            }

            token = page.NextPageToken;
        }
        while (token.Length > 0);
    }

    private static RpcException Exceeded(string tenant, string quota, double limit, double usage, string advice)
    {
        string description = $"quota {quota} of tenant {tenant}: limit {limit}, usage {usage}; {advice}";
        var failure = new QuotaFailure();
        failure.Violations.Add(new QuotaFailure.Types.Violation { Subject = "tenant:" + tenant, Description = description });
        var status = new Google.Rpc.Status { Code = (int)Code.ResourceExhausted, Message = description };
        status.Details.Add(Any.Pack(failure));
        return status.ToRpcException();
    }

    private TenantState State(string tenant) => _state.GetOrAdd(tenant, _ => new TenantState());

    private sealed class TenantState
    {
        public Lock Gate { get; } = new();

        public long ReservedBytes { get; set; }

        public long StoredBytes { get; set; }

        public long StoredAt { get; set; }

        public int Streams { get; set; }

        public double Tokens { get; set; }

        public long LastRefill { get; set; }
    }

    private sealed class StreamLease(TenantState state) : IDisposable
    {
        private int _closed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                lock (state.Gate)
                {
                    state.Streams--;
                }
            }
        }
    }

    private sealed class NoOp : IDisposable
    {
        public static NoOp Instance { get; } = new();

        public void Dispose()
        {
        }
    }
}

using KvDb.QueryEngine;
using KvDb.Server.Security;
using KvDb.Store;
using Prometheus;

namespace KvDb.Server.Observability;

/// <summary>
/// The server's Prometheus metrics (prometheus-net: a maintained library that gives counters, histograms, the text
/// exposition format and .NET runtime metrics; chosen over OpenTelemetry's Prometheus exporter, which is still a
/// beta here). One registry per server, so two servers in one process (tests, the auth bench) do not mix their
/// figures. Names carry the <c>kvdb_</c> prefix and base units; labels are bounded (method, status code, plan, tier,
/// tenant): never a context id or a token value. Store figures are read from <see cref="IKvStore.GetStats"/> when
/// Prometheus scrapes, so they cost nothing between scrapes.
/// </summary>
public sealed class KvDbMetrics
{
    private static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(0.000025, 2, 20);

    private readonly Counter _requests;
    private readonly Histogram _latency;
    private readonly Counter _attendRequests;
    private readonly Counter _tokensScored;
    private readonly Counter _tokensAttended;
    private readonly Counter _bytesRead;
    private readonly Histogram _attendLatency;
    private readonly Histogram _mass;
    private readonly Gauge _tierBytes;
    private readonly Gauge _tierBlocks;
    private readonly Counter _tierHits;
    private readonly Counter _tierMisses;
    private readonly Gauge _tierHitRatio;
    private readonly Counter _promotions;
    private readonly Counter _demotions;
    private readonly Gauge _contexts;
    private readonly Gauge _logicalBytes;
    private readonly Counter _dedupeHits;
    private readonly Gauge _walBytes;
    private readonly Counter _corrupt;
    private readonly Histogram _walCommit;
    private readonly Gauge _diskBytes;
    private readonly Histogram _checkpoint;
    private readonly Gauge _tenantBytes;
    private readonly Gauge _tenantContexts;
    private readonly Gauge _tenantQuotaBytes;

    /// <summary>
    /// Creates the metrics; store and tenant figures are taken from <paramref name="store"/>, <paramref name="tenants"/>
    /// and <paramref name="quotas"/> at each scrape, index updates from <paramref name="indexes"/> as they happen.
    /// </summary>
    public KvDbMetrics(IKvStore store, TenantRegistry tenants, TenantQuotas quotas, Index.Catalog.LayerIndexCatalog? indexes = null)
    {
        Registry = Metrics.NewCustomRegistry();
        DotNetStats.Register(Registry);
        MetricFactory f = Metrics.WithCustomRegistry(Registry);
        _requests = f.CreateCounter("kvdb_rpc_requests_total", "gRPC calls answered, by method and status code.", ["method", "code"]);
        _latency = f.CreateHistogram("kvdb_rpc_duration_seconds", "gRPC call latency, by method.", ["method"], new HistogramConfiguration { Buckets = LatencyBuckets });
        _attendRequests = f.CreateCounter("kvdb_attend_requests_total", "Attend requests answered, by the plan that ran.", ["plan"]);
        _tokensScored = f.CreateCounter("kvdb_attend_tokens_scored_total", "(query row, token) pairs scored by Attend, by plan.", ["plan"]);
        _tokensAttended = f.CreateCounter("kvdb_attend_tokens_attended_total", "(query row, token) pairs attended by Attend, by plan.", ["plan"]);
        _bytesRead = f.CreateCounter("kvdb_attend_bytes_read_total", "K/V bytes Attend read, by plan.", ["plan"]);
        _attendLatency = f.CreateHistogram("kvdb_attend_duration_seconds", "Attend server time, by plan.", ["plan"], new HistogramConfiguration { Buckets = LatencyBuckets });
        _mass = f.CreateHistogram("kvdb_attend_mass_estimate", "AUTO's estimated softmax mass of the exactly attended part, per query head.", ["plan"], new HistogramConfiguration { Buckets = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1] });
        _tierBytes = f.CreateGauge("kvdb_tier_bytes", "K/V bytes held per tier.", ["tier"]);
        _tierBlocks = f.CreateGauge("kvdb_tier_blocks", "Blocks held per tier.", ["tier"]);
        _tierHits = f.CreateCounter("kvdb_tier_hits_total", "Reads that found their block in the tier, by tier and the CPU tier's eviction policy.", ["tier", "policy"]);
        _tierMisses = f.CreateCounter("kvdb_tier_misses_total", "Reads that missed the tier (cpu: promoted from disk; disk: failed checksum), by tier and the CPU tier's eviction policy.", ["tier", "policy"]);
        _tierHitRatio = f.CreateGauge("kvdb_tier_hit_ratio", "hits / (hits + misses) of the tier since start (0 before any read), by tier and the CPU tier's eviction policy.", ["tier", "policy"]);
        _promotions = f.CreateCounter("kvdb_tier_promotions_total", "Blocks read back into the tier from the one below (cpu: from disk).", ["tier"]);
        _demotions = f.CreateCounter("kvdb_tier_demotions_total", "Blocks moved out of the tier to the one below (cpu: to disk).", ["tier"]);
        _contexts = f.CreateGauge("kvdb_contexts", "Contexts stored.");
        _logicalBytes = f.CreateGauge("kvdb_logical_bytes", "K/V bytes the contexts hold, as if nothing were shared.");
        _dedupeHits = f.CreateCounter("kvdb_dedupe_hits_total", "Full blocks stored once for a second context.");
        _walBytes = f.CreateGauge("kvdb_wal_bytes", "Bytes in the write-ahead log since the last checkpoint.");
        _corrupt = f.CreateCounter("kvdb_corrupt_records_total", "Log records, checkpoint files and blocks that failed their checksum.");
        _walCommit = f.CreateHistogram("kvdb_wal_commit_duration_seconds", "Time an acknowledgement waited for its log records to be durable.", new HistogramConfiguration { Buckets = LatencyBuckets });
        _checkpoint = f.CreateHistogram("kvdb_checkpoint_duration_seconds", "Checkpoint duration.", new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 16) });
        _diskBytes = f.CreateGauge("kvdb_disk_bytes", "Data directory space: kind = block_log_live, block_log_dead (records compaction gives back), block_log_files, wal_files.", ["kind"]);
        Histogram compaction = f.CreateHistogram("kvdb_compaction_duration_seconds", "Compaction of the disk block log (manual or automatic).", new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 20) });
        Counter compactedBytes = f.CreateCounter("kvdb_compaction_moved_bytes_total", "Live block bytes compaction copied forward.");
        if (store is KvStore durable)
        {
            durable.Compacted += r =>
            {
                compaction.Observe(r.Milliseconds / 1e3);
                compactedBytes.Inc(r.BytesMoved);
            };
            durable.WalCommitted += seconds => _walCommit.Observe(seconds);
            durable.CheckpointTaken += seconds => _checkpoint.Observe(seconds);
        }

        Counter indexStarted = f.CreateCounter("kvdb_index_updates_started_total", "Index updates (builds or extensions of a layer's segments) started, by family.", ["family"]);
        Counter indexFinished = f.CreateCounter("kvdb_index_updates_finished_total", "Index updates ended, by family and outcome (ok, failed).", ["family", "outcome"]);
        Histogram indexDuration = f.CreateHistogram("kvdb_index_update_duration_seconds", "Index update duration, by family.", ["family"], new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 20) });
        if (indexes is not null)
        {
            indexes.UpdateStarted += family => indexStarted.WithLabels(family).Inc();
            indexes.UpdateFinished += (family, seconds, failed) =>
            {
                indexFinished.WithLabels(family, failed ? "failed" : "ok").Inc();
                indexDuration.WithLabels(family).Observe(seconds);
            };
        }

        _tenantBytes = f.CreateGauge("kvdb_tenant_bytes", "K/V bytes of a tenant's contexts (with appends in flight).", ["tenant"]);
        _tenantContexts = f.CreateGauge("kvdb_tenant_contexts", "Contexts of a tenant.", ["tenant"]);
        _tenantQuotaBytes = f.CreateGauge("kvdb_tenant_quota_bytes", "A tenant's byte quota (0 = unlimited).", ["tenant"]);
        Registry.AddBeforeCollectCallback(() => Refresh(store, tenants, quotas));
    }

    /// <summary>The registry <c>/metrics</c> exports.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Counts one gRPC call.</summary>
    public void Call(string method, string code, double seconds)
    {
        _requests.WithLabels(method, code).Inc();
        _latency.WithLabels(method).Observe(seconds);
    }

    /// <summary>Counts one answered Attend.</summary>
    public void Attend(AttentionStats stats)
    {
        string plan = PlanLabel(stats.Plan);
        _attendRequests.WithLabels(plan).Inc();
        _tokensScored.WithLabels(plan).Inc(stats.TokensScored);
        _tokensAttended.WithLabels(plan).Inc(stats.TokensAttended);
        _bytesRead.WithLabels(plan).Inc(stats.BytesRead);
        _attendLatency.WithLabels(plan).Observe(stats.ServerMicros / 1e6);
        if (stats.Quality is null)
        {
            return;
        }

        // Per query head AUTO answered with an estimate (exact heads' mass is 1 by definition; fixed budgets have none).
        foreach (HeadQuality q in stats.Quality)
        {
            if (q.Plan is "sampled" or "heavy")
            {
                _mass.WithLabels(plan).Observe(q.MassExact);
            }
        }
    }

    /// <summary>A bounded plan label: the plan's family ("exact", "auto", "centroid", …), not its parameters.</summary>
    public static string PlanLabel(string plan)
    {
        int colon = plan.IndexOf(':', StringComparison.Ordinal);
        return colon < 0 ? plan : plan[..colon];
    }

    private void Refresh(IKvStore store, TenantRegistry tenants, TenantQuotas quotas)
    {
        StoreStats s = store.GetStats();
        string policy = WireMapping.PolicyName(s.EvictionPolicy);
        foreach (Store.TierStats t in s.Tiers)
        {
            _tierBytes.WithLabels(t.Name).Set(t.Bytes);
            _tierBlocks.WithLabels(t.Name).Set(t.Blocks);
            _tierHits.WithLabels(t.Name, policy).IncTo(t.Hits);
            _tierMisses.WithLabels(t.Name, policy).IncTo(t.Misses);
            _tierHitRatio.WithLabels(t.Name, policy).Set(WireMapping.HitRatio(t.Hits, t.Misses));
        }

        foreach (Store.TierStats t in s.Tiers)
        {
            if (t.Name == "cpu")
            {
                _promotions.WithLabels("cpu").IncTo(t.Misses);
                _demotions.WithLabels("cpu").IncTo(s.Demotions);
            }
        }

        _contexts.Set(s.Contexts);
        _logicalBytes.Set(s.LogicalBytes);
        _dedupeHits.IncTo(s.DedupeHits);
        _walBytes.Set(s.WalBytes);
        if (s.Disk is DiskSpace d)
        {
            _diskBytes.WithLabels("block_log_live").Set(d.BlockLogLiveBytes);
            _diskBytes.WithLabels("block_log_dead").Set(d.BlockLogDeadBytes);
            _diskBytes.WithLabels("block_log_files").Set(d.BlockLogFileBytes);
            _diskBytes.WithLabels("wal_files").Set(d.WalFileBytes);
        }
        _corrupt.IncTo(s.CorruptRecords);
        foreach (TenantRecord t in tenants.List())
        {
            (long bytes, long contexts, _) = quotas.Usage(t.Name);
            _tenantBytes.WithLabels(t.Name).Set(bytes);
            _tenantContexts.WithLabels(t.Name).Set(contexts);
            _tenantQuotaBytes.WithLabels(t.Name).Set(t.Quota.Bytes);
        }
    }
}

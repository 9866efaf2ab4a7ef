using Grpc.Core;
using KvDb.Protocol.V1;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Planning;
using KvDb.Server.Security;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Admin: store statistics per tier, demotion to disk, checkpoints and compaction on demand.</summary>
public sealed class AdminService : Admin.AdminBase
{
    private readonly IKvStore _store;
    private readonly AttentionExecutor _executor;
    private readonly AuditLog _audit;
    private readonly TenantQuotas _quotas;
    private readonly TenantRegistry _tenants;

    /// <summary>Creates the service over the store, the executor whose query costs it reports, the audit log it reads and the tenants whose usage it reports.</summary>
    public AdminService(IKvStore store, AttentionExecutor executor, AuditLog audit, TenantQuotas quotas, Authenticator authenticator)
    {
        _store = store;
        _executor = executor;
        _audit = audit;
        _quotas = quotas;
        _tenants = authenticator.Tenants;
    }

    /// <inheritdoc />
    /// <remarks>Streams until the client cancels or the server stops; a watcher that falls behind loses the oldest events (gaps in sequence).</remarks>
    public override async Task WatchEvents(WatchEventsRequest request, IServerStreamWriter<BlockEvent> responseStream, ServerCallContext context)
    {
        if (request.Buffer < 0)
        {
            throw KvDbException.Invalid($"buffer must be ≥ 0 (0 = 4096 events), got {request.Buffer}");
        }

        int buffer = request.Buffer == 0 ? 4096 : request.Buffer;
        Store.Events.KvEventHub hub = _store.Events;
        using Store.Events.KvEventSubscription subscription = hub.Subscribe(buffer, request.HasAfterSequence ? request.AfterSequence : long.MaxValue, out List<Store.Events.KvEvent> replay, out long lost);
        try
        {
            // Sent so far (−1: a live-only watcher that has had nothing yet; it starts at the first event it gets).
            long last = request.HasAfterSequence ? request.AfterSequence : -1;
            last = await SendAsync(responseStream, replay, lost, last, context.CancellationToken).ConfigureAwait(false);
            await foreach (Store.Events.KvEvent e in subscription.Reader.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
            {
                if (last < 0)
                {
                    last = e.Sequence - 1;
                }

                if (e.Sequence > last + 1)
                {
                    // This watcher's buffer overflowed while it was sending: fill the hole from the hub's ring, so
                    // nothing is lost unless the ring itself moved past it (then a "gap" event says how much).
                    List<Store.Events.KvEvent> fill = hub.Since(last, out long missed);
                    last = await SendAsync(responseStream, fill, missed, last, context.CancellationToken).ConfigureAwait(false);
                }

                if (e.Sequence > last)
                {
                    await responseStream.WriteAsync(ToWire(e), context.CancellationToken).ConfigureAwait(false);
                    last = e.Sequence;
                }
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away.
        }
    }

    /// <summary>Sends a "gap" event for <paramref name="lost"/> events after <paramref name="last"/> (if any), then <paramref name="events"/> newer than it; returns the last sequence sent.</summary>
    private static async Task<long> SendAsync(IServerStreamWriter<BlockEvent> stream, List<Store.Events.KvEvent> events, long lost, long last, CancellationToken cancel)
    {
        if (lost > 0)
        {
            last += lost;
            await stream.WriteAsync(new BlockEvent { Sequence = last, UnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Kind = "gap", Lost = lost }, cancel).ConfigureAwait(false);
        }

        foreach (Store.Events.KvEvent e in events)
        {
            if (e.Sequence > last)
            {
                await stream.WriteAsync(ToWire(e), cancel).ConfigureAwait(false);
                last = e.Sequence;
            }
        }

        return last;
    }

    private static BlockEvent ToWire(Store.Events.KvEvent e) => new()
    {
        Sequence = e.Sequence,
        UnixMs = e.UnixMs,
        Kind = e.KindName,
        Model = e.Model,
        Block = e.Block,
        Tokens = e.Tokens,
        Tier = e.Tier,
        FromTier = e.Kind switch { Store.Events.KvEventKind.Demoted => "cpu", Store.Events.KvEventKind.Promoted => "disk", _ => string.Empty },
    };

    /// <inheritdoc />
    public override Task<ReadAuditResponse> ReadAudit(ReadAuditRequest request, ServerCallContext context)
    {
        if (request.Limit < 0 || request.AfterSequence < 0)
        {
            throw KvDbException.Invalid($"limit and after_sequence must be ≥ 0 (limit 0 = 100, at most 1000), got {request.Limit} and {request.AfterSequence}");
        }

        var response = new ReadAuditResponse();
        foreach (Security.AuditEntry e in _audit.Read(request.AfterSequence, request.Limit == 0 ? 100 : Math.Min(request.Limit, 1000)))
        {
            response.Entries.Add(new Protocol.V1.AuditEntry { Sequence = e.Sequence, UnixMs = e.UnixMs, Actor = e.Actor, Peer = e.Peer, Action = e.Action, Target = e.Target, Outcome = e.Outcome });
        }

        return Task.FromResult(response);
    }

    /// <inheritdoc />
    public override Task<StatsResponse> GetStats(GetStatsRequest request, ServerCallContext context)
    {
        StoreStats s = _store.GetStats();
        var response = new StatsResponse
        {
            Models = s.Models,
            Contexts = s.Contexts,
            BlockRefs = s.Blocks,
            SharedBlocks = s.SharedBlocks,
            LogicalBytes = s.LogicalBytes,
            CpuBudgetBytes = s.CpuBudgetBytes,
            DedupeHits = s.DedupeHits,
            CorruptRecords = s.CorruptRecords,
            ExpiredContexts = s.ExpiredContexts,
            WalBytes = s.WalBytes,
            Durable = s.Durable,
            EvictionPolicy = WireMapping.PolicyName(s.EvictionPolicy),
            QueryCosts = new QueryCosts
            {
                StreamBytesPerSecond = _executor.Costs.StreamBytesPerMicro * 1e6,
                GatherBytesPerSecond = _executor.Costs.GatherBytesPerMicro * 1e6,
                Parallelism = _executor.Costs.Parallelism,
                Simd = CostModel.SimdPath,
                DefaultEpsilon = _executor.DefaultQuality.Epsilon,
                DefaultDelta = _executor.DefaultQuality.Delta,
            },
        };
        if (s.Disk is Store.DiskSpace d)
        {
            response.Disk = new Protocol.V1.DiskSpace
            {
                BlockLogLiveBytes = d.BlockLogLiveBytes, BlockLogDeadBytes = d.BlockLogDeadBytes, BlockLogDeadRatio = d.DeadRatio,
                BlockLogFileBytes = d.BlockLogFileBytes, WalFileBytes = d.WalFileBytes, Compactions = d.Compactions,
            };
        }

        foreach (Store.TierStats t in s.Tiers)
        {
            response.Tiers.Add(new Protocol.V1.TierStats { Name = t.Name, Bytes = t.Bytes, Blocks = t.Blocks, Hits = t.Hits, Misses = t.Misses, HitRatio = WireMapping.HitRatio(t.Hits, t.Misses) });
        }

        foreach (TenantRecord t in _tenants.List())
        {
            (long bytes, long contexts, int streams) = _quotas.Usage(t.Name);
            response.Tenants.Add(new TenantUsage
            {
                Tenant = t.Name, Bytes = bytes, Contexts = contexts, Streams = streams,
                QuotaBytes = t.Quota.Bytes, QuotaContexts = t.Quota.Contexts, QuotaStreams = t.Quota.Streams, QuotaRequestsPerSecond = t.Quota.RequestsPerSecond,
                CpuBytes = _quotas.ResidentBytes(t.Name), QuotaCpuBytes = t.Quota.CpuBytes,
            });
        }

        return Task.FromResult(response);
    }

    /// <inheritdoc />
    public override Task<EvictResponse> Evict(EvictRequest request, ServerCallContext context)
    {
        (long blocks, long bytes) = _store.Evict(request.TargetCpuBytes);
        return Task.FromResult(new EvictResponse { Blocks = blocks, Bytes = bytes });
    }

    /// <inheritdoc />
    public override Task<CheckpointResponse> Checkpoint(CheckpointRequest request, ServerCallContext context)
    {
        CheckpointResult r = _store.Checkpoint();
        return Task.FromResult(new CheckpointResponse { Contexts = r.Contexts, Blocks = r.Blocks, LogBytesTruncated = r.LogBytesTruncated, Milliseconds = r.Milliseconds });
    }

    /// <inheritdoc />
    public override Task<CompactResponse> Compact(CompactRequest request, ServerCallContext context)
    {
        CompactionResult r = _store.Compact();
        return Task.FromResult(new CompactResponse
        {
            BlocksMoved = r.BlocksMoved, BytesMoved = r.BytesMoved, CorruptBlocks = r.CorruptBlocks,
            LogBytesBefore = r.LogBytesBefore, LogBytesAfter = r.LogBytesAfter,
            DiskBytesBefore = r.DiskBytesBefore, DiskBytesAfter = r.DiskBytesAfter, Milliseconds = r.Milliseconds,
        });
    }
}

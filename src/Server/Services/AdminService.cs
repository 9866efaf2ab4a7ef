using Grpc.Core;
using KvDb.Protocol.V1;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Admin: store statistics per tier, demotion to disk, and checkpoints on demand.</summary>
public sealed class AdminService : Admin.AdminBase
{
    private readonly IKvStore _store;

    /// <summary>Creates the service over the store.</summary>
    public AdminService(IKvStore store)
    {
        _store = store;
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
        };
        foreach (Store.TierStats t in s.Tiers)
        {
            response.Tiers.Add(new Protocol.V1.TierStats { Name = t.Name, Bytes = t.Bytes, Blocks = t.Blocks, Hits = t.Hits, Misses = t.Misses });
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
}

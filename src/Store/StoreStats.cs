namespace KvDb.Store;

/// <summary>Counters an operator reads to see what the store holds.</summary>
public sealed record StoreStats(int Models, int Contexts, long Blocks, long CpuBytes, long CpuBudgetBytes, long LogicalBytes)
{
    /// <summary>Per-tier bytes, blocks, hits and misses (cpu first, then disk when a data directory is set, then gpu when the GPU tier is on).</summary>
    public IReadOnlyList<TierStats> Tiers { get; init; } = [];

    /// <summary>Distinct full blocks in the shared directory.</summary>
    public long SharedBlocks { get; init; }

    /// <summary>Full blocks that were not stored again because an identical block existed.</summary>
    public long DedupeHits { get; init; }

    /// <summary>Log records, checkpoint files and blocks that failed their checksum (detected, reported, never served).</summary>
    public long CorruptRecords { get; init; }

    /// <summary>Contexts deleted by their TTL.</summary>
    public long ExpiredContexts { get; init; }

    /// <summary>Bytes in the write-ahead log (0 when memory only).</summary>
    public long WalBytes { get; init; }

    /// <summary>True when the store keeps a data directory.</summary>
    public bool Durable { get; init; }

    /// <summary>Live and dead bytes of the disk block log and the files' sizes (null when memory only).</summary>
    public DiskSpace? Disk { get; init; }

    /// <summary>How the CPU tier picks the blocks it demotes (<see cref="StoreOptions.EvictionPolicy"/>).</summary>
    public EvictionPolicy EvictionPolicy { get; init; }

    /// <summary>Blocks demoted from the CPU tier to the disk tier since start (eviction under pressure or on demand).</summary>
    public long Demotions { get; init; }
}

using Microsoft.Extensions.Logging;

namespace KvDb.Store;

/// <summary>Configuration of the KV store; every default works without a config file.</summary>
public sealed record StoreOptions
{
    /// <summary>Bytes of K/V the CPU tier may hold; 0 = half of the memory available to the process.</summary>
    public long CpuBudgetBytes { get; init; }

    /// <summary>
    /// Bytes of device memory for the GPU tier (mirrors of the blocks of queried layers, read there by the CUDA
    /// attention kernels); 0 = off. Off as well, with a log line, when the CUDA backend is unavailable.
    /// </summary>
    public long GpuBudgetBytes { get; init; }

    /// <summary>CUDA device of the GPU tier.</summary>
    public int GpuDevice { get; init; }

    /// <summary>How the CPU tier picks blocks to demote to the disk tier: least recently used (default) or TinyLFU (least frequently used among the coldest).</summary>
    public EvictionPolicy EvictionPolicy { get; init; } = EvictionPolicy.Lru;

    /// <summary>
    /// The pin quota: the fraction of the CPU tier (and of the GPU tier, for pins to it) that context pins may hold
    /// together; a pin beyond it is RESOURCE_EXHAUSTED. Between 0 and 1; default one half.
    /// </summary>
    public double MaxPinnedFraction { get; init; } = 0.5;

    /// <summary>Directory for persistent data; null = memory only (nothing survives a restart).</summary>
    public string? DataDirectory { get; init; }

    /// <summary>How often the background task deletes expired contexts and considers a checkpoint.</summary>
    public TimeSpan MaintenanceInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A checkpoint is taken when the write-ahead log grew this much since the last one.</summary>
    public long CheckpointLogBytes { get; init; } = 512L << 20;

    /// <summary>A checkpoint is taken at least this often while anything changed.</summary>
    public TimeSpan CheckpointInterval { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// With a data directory: K/V writes (appends, block copies, checkpoints) are refused with RESOURCE_EXHAUSTED while
    /// they would leave less than this many bytes free on its filesystem, so the logs never hit a full disk.
    /// </summary>
    public long DiskReserveBytes { get; init; } = 64L << 20;

    /// <summary>Test-only: faults injected into the disk tier's block reads (slow, failing, corrupted); null = none.</summary>
    public IDiskReadFaults? DiskReadFaults { get; init; }

    /// <summary>
    /// The automatic compaction policy: the disk block log is compacted when at least this share of its records is dead
    /// (and at least <see cref="CompactionMinDeadBytes"/>). 0 turns the policy off (<c>Admin.Compact</c> still works).
    /// </summary>
    public double CompactionDeadRatio { get; init; } = 0.5;

    /// <summary>
    /// Segment file size (log2 bytes, 23 to 30) of logs this store creates; space comes back a whole segment at a time.
    /// An existing log keeps the size it was made with (recorded in its folder).
    /// </summary>
    public int LogSegmentSizeBits { get; init; } = Durability.FasterLogFiles.SegmentSizeBits;

    /// <summary>Dead bytes below which the automatic policy never compacts: a compaction costs a checkpoint and a copy of every live block.</summary>
    public long CompactionMinDeadBytes { get; init; } = 64L << 20;

    /// <summary>Where the store reports corruption and recovery; null = standard error.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>The CPU budget with the default resolved.</summary>
    public long ResolvedCpuBudgetBytes =>
        CpuBudgetBytes > 0 ? CpuBudgetBytes : Math.Max(64L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2);
}

namespace KvDb.Store;

/// <summary>
/// Where the disk space of a data directory goes: the block log's live and dead record bytes (dead = records no block
/// refers to any more, what compaction gives back), the segment-file bytes of the block log and of the write-ahead log,
/// and the compactions run since start.
/// </summary>
public sealed record DiskSpace(long BlockLogLiveBytes, long BlockLogDeadBytes, long BlockLogFileBytes, long WalFileBytes, long Compactions)
{
    /// <summary>Dead share of the block log's records (0 when it is empty).</summary>
    public double DeadRatio => BlockLogLiveBytes + BlockLogDeadBytes == 0 ? 0 : (double)BlockLogDeadBytes / (BlockLogLiveBytes + BlockLogDeadBytes);
}

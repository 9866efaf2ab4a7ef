namespace KvDb.TestKit.Faults;

/// <summary>What the server is doing when a kill -9 lands (besides appending, which every operation does).</summary>
public enum FaultOperation
{
    /// <summary>AppendKv streams only.</summary>
    Append,

    /// <summary>Admin.Checkpoint back to back (checkpoint file written, block log flushed, WAL truncated).</summary>
    Checkpoint,

    /// <summary>Sparse-plan Attend calls, whose background index builds write .kix segment files.</summary>
    IndexSave,

    /// <summary>A small CPU budget plus reads and Admin.Evict: blocks demoted to the disk tier and read back.</summary>
    TierMove,

    /// <summary>Admin.Compact of the disk block log while contexts are deleted and appended.</summary>
    Compaction,
}

namespace KvDb.Store;

/// <summary>How the CPU tier picks the blocks it demotes to the disk tier when it is over its high watermark.</summary>
public enum EvictionPolicy
{
    /// <summary>Least recently used first (the default).</summary>
    Lru = 0,

    /// <summary>
    /// Frequency-aware (TinyLFU): among the least recently used blocks (those covering <see cref="BlockManager.TinyLfuPoolFactor"/>
    /// times the bytes to demote), the least frequently accessed go first, by a <see cref="FrequencySketch"/> of block reads and writes.
    /// </summary>
    TinyLfu = 1,
}

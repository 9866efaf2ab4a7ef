namespace KvDb.Store;

/// <summary>How the CPU tier picks the blocks it demotes to the disk tier when it is over its high watermark.</summary>
public enum EvictionPolicy
{
    /// <summary>Least recently used first (the default).</summary>
    Lru = 0,

    /// <summary>
    /// Frequency-aware (W-TinyLFU style): the least frequently accessed blocks go first, by a <see cref="FrequencySketch"/> of
    /// block reads and writes with aging; the most recently used <see cref="BlockManager.TinyLfuWindowPercent"/> percent (the
    /// window) are not ranked, and equal frequencies go least recently used first.
    /// </summary>
    TinyLfu = 1,
}

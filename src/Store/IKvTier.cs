namespace KvDb.Store;

/// <summary>
/// A place blocks can live: the CPU tier (the native slab arena), the disk tier (the block log under the data
/// directory) and, later, a GPU tier. The block manager moves full blocks between tiers; every tier reports
/// its own counters.
/// </summary>
public interface IKvTier
{
    /// <summary>Short name shown in stats ("cpu", "disk", "gpu").</summary>
    string Name { get; }

    /// <summary>Current counters.</summary>
    TierStats GetStats();
}

namespace KvDb.Store;

/// <summary>The tier a pinned context's blocks are not demoted below (<see cref="IKvStore.UpdateContext(string, long?, bool?, PinTier?)"/>).</summary>
public enum PinTier : byte
{
    /// <summary>Held in the CPU tier: never demoted to disk, not evicted (the pin before tiers could be named).</summary>
    Cpu = 0,

    /// <summary>Held in the CPU tier and mirrored, pinned, in the GPU tier; needs a server with a GPU tier.</summary>
    Gpu = 1,

    /// <summary>No constraint beyond durability: the pin is recorded (and survives restarts) but holds nothing.</summary>
    Disk = 2,
}

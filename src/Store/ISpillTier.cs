namespace KvDb.Store;

/// <summary>A tier below the CPU that keeps checksummed copies of full blocks addressed by a handle (the disk tier today).</summary>
public interface ISpillTier : IKvTier
{
    /// <summary>Queues a copy of a full block; returns its handle. Not readable until <see cref="Flush"/> returns.</summary>
    long Write(BlockAddress address, ulong checksum, ReadOnlySpan<byte> blockBytes);

    /// <summary>True when <paramref name="bytes"/> of block copies can be written and still leave the tier's reserve free.</summary>
    bool HasRoom(long bytes);

    /// <summary>The RESOURCE_EXHAUSTED error of a write of <paramref name="bytes"/> the tier has no room for.</summary>
    KvDb.Core.KvDbException Full(long bytes);

    /// <summary>Makes every queued copy durable and readable.</summary>
    void Flush();

    /// <summary>
    /// Reads the copy at <paramref name="handle"/> into <paramref name="destination"/>; false when it is missing, torn or
    /// fails its checksum. Throws <see cref="IOException"/> when the device failed the read (the copy may be intact, a
    /// retry may succeed) and <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fired.
    /// </summary>
    bool TryRead(long handle, BlockAddress address, ulong checksum, Span<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>Tells the tier a copy is no longer referenced (its space becomes garbage).</summary>
    void Forget(long handle, long blockBytes);

    /// <summary>Tells the tier a copy written before this process started (recovered from a checkpoint) is referenced.</summary>
    void Adopt(long blockBytes);
}

namespace KvDb.Store;

/// <summary>
/// Test-only fault injection into the disk tier's block reads (<see cref="StoreOptions.DiskReadFaults"/>): a slow
/// disk, a failing one, or one that returns other bytes than were written. Production stores have none.
/// </summary>
public interface IDiskReadFaults
{
    /// <summary>Runs before a block is read from disk: may wait (honouring <paramref name="cancellationToken"/>) or throw <see cref="IOException"/>.</summary>
    void BeforeRead(BlockAddress address, CancellationToken cancellationToken);

    /// <summary>Sees the record as read (header, then the block's bytes) before it is checked, and may change it.</summary>
    void AfterRead(BlockAddress address, Span<byte> record);
}

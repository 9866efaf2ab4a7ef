namespace KvDb.Store;

/// <summary>
/// The memory-only configuration of <see cref="KvStore"/>: content-addressed, prefix-shared blocks in the native
/// slab arena and nothing on disk, whatever <see cref="StoreOptions.DataDirectory"/> says.
/// </summary>
public sealed class InMemoryKvStore : KvStore
{
    /// <summary>Creates an empty memory-only store.</summary>
    public InMemoryKvStore(StoreOptions options)
        : base((options ?? throw new ArgumentNullException(nameof(options))) with { DataDirectory = null })
    {
    }
}

using KvDb.Store.Durability;

namespace KvDb.Store;

/// <summary>
/// What an <see cref="AppendTransaction"/> needs of its store, and nothing more: blocks for new rows and their
/// release on rollback, dedupe of blocks that fill, the write-ahead log, and publication of committed rows.
/// <see cref="KvStore"/> implements it; recovery replays through the same transactions with logging off.
/// </summary>
internal interface IAppendHost
{
    /// <summary>The lock a commit takes before the context's gate, so log order equals publication order.</summary>
    Lock MetadataLock { get; }

    /// <summary>A new empty block of <paramref name="layer"/> in the CPU tier, for rows past a full tail.</summary>
    KvBlock AllocateBlock(ModelSchema model, int layer, string owner);

    /// <summary>
    /// The published block at <paramref name="address"/> with content <paramref name="checksum"/>, with a reference
    /// added, when there is one (counted as a dedupe hit); else null.
    /// </summary>
    KvBlock? AcquireIdentical(BlockAddress address, ulong checksum);

    /// <summary>Tells the tiers that a sealed block is full (immutable from now on: it may be spilled and mirrored).</summary>
    void MarkFull(KvBlock block);

    /// <summary>Rolls a layer back to <paramref name="length"/> rows, giving the blocks past it back to the tiers.</summary>
    void Truncate(ContextLayer layer, long length, int blockSize);

    /// <summary>
    /// Makes a commit visible: publishes the sealed full blocks appended since <paramref name="startLengths"/>,
    /// moves the committed lengths to the layers' lengths and indexes the context under its new chain values.
    /// Metadata lock and context gate held.
    /// </summary>
    void PublishCommitted(KvContext context, ReadOnlySpan<long> startLengths);

    /// <summary>Logs a record (Commit, Abort); returns its address, or −1 when nothing is logged.</summary>
    long Log(WalRecord record);

    /// <summary>Logs a Chunk record encoded straight from the appender's spans; returns its address, or −1.</summary>
    long LogChunk(long transaction, string contextId, int layer, long start, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values);

    /// <summary>Blocks until the record at <paramref name="address"/> (−1 = none) is durable.</summary>
    void WaitDurable(long address);

    /// <summary>Completes once the record at <paramref name="address"/> (−1 = none) is durable.</summary>
    Task WaitDurableAsync(long address);
}

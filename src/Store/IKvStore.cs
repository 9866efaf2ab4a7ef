namespace KvDb.Store;

/// <summary>The store seam: models, contexts, transactional appends, pinned reads of layers, prefix sharing and administration.</summary>
public interface IKvStore : IDisposable
{
    /// <summary>Creates a model (idempotent for an identical schema; ALREADY_EXISTS for a different one) and returns it normalized.</summary>
    ModelSchema CreateModel(ModelSchema model);

    /// <summary>Returns a model or throws NOT_FOUND.</summary>
    ModelSchema GetModel(string name);

    /// <summary>All models, by name.</summary>
    IReadOnlyList<ModelSchema> ListModels();

    /// <summary>
    /// Creates a context of <paramref name="model"/> in <paramref name="ns"/>; an empty id gets a server-assigned one.
    /// With <paramref name="prefixTokenIds"/>, the context starts with the cached KV of that prefix (shared, not copied).
    /// </summary>
    ContextInfo CreateContext(string model, string ns, string? id, ReadOnlySpan<int> prefixTokenIds) =>
        CreateContext(model, ns, id, prefixTokenIds, 0);

    /// <summary>As above; a positive <paramref name="ttlSeconds"/> deletes the context that long after creation.</summary>
    ContextInfo CreateContext(string model, string ns, string? id, ReadOnlySpan<int> prefixTokenIds, long ttlSeconds);

    /// <summary>Copies a context's committed KV by reference under a new id (empty = server-assigned).</summary>
    ContextInfo ForkContext(string id, string? newId);

    /// <summary>Returns a context or throws NOT_FOUND.</summary>
    ContextInfo GetContext(string id);

    /// <summary>Contexts in id order, <paramref name="pageSize"/> at a time (0 = 100), after <paramref name="pageToken"/>; only ids that start with <paramref name="idPrefix"/>.</summary>
    ContextPage ListContexts(int pageSize, string? pageToken, string idPrefix = "");

    /// <summary>Deletes a context; false when it did not exist.</summary>
    bool DeleteContext(string id);

    /// <summary>
    /// Changes a context's TTL and pin, durably; null leaves a setting as it is. <paramref name="ttlSeconds"/> &gt; 0
    /// expires the context that long from now, 0 keeps it forever. Pinning reads every block of the context back into
    /// the CPU tier and keeps it there (demotion and eviction skip it) until unpinned or deleted; it fails with
    /// RESOURCE_EXHAUSTED, changing nothing, when pinned blocks would hold more than the pin quota
    /// (<see cref="StoreOptions.MaxPinnedFraction"/>, half by default) of the CPU tier. Pinning here always means the CPU tier; a TTL-only update keeps the tier.
    /// </summary>
    ContextInfo UpdateContext(string id, long? ttlSeconds, bool? pinned);

    /// <summary>
    /// As <see cref="UpdateContext(string, long?, bool?)"/>, with the tier the pin holds the context's blocks in:
    /// <see cref="PinTier.Cpu"/> (also when null and <paramref name="pinned"/> is given), <see cref="PinTier.Gpu"/> (CPU
    /// pin plus pinned GPU-tier mirrors; FAILED_PRECONDITION without a GPU tier) or <see cref="PinTier.Disk"/> (recorded,
    /// holds nothing). A tier with <paramref name="pinned"/> null pins; with <paramref name="pinned"/> false it is INVALID_ARGUMENT.
    /// Pins of each tier may hold at most <see cref="StoreOptions.MaxPinnedFraction"/> of it (RESOURCE_EXHAUSTED beyond, nothing changed).
    /// </summary>
    ContextInfo UpdateContext(string id, long? ttlSeconds, bool? pinned, PinTier? pinTier);

    /// <summary>Opens the single append transaction of a context (FAILED_PRECONDITION if one is open).</summary>
    IAppendTransaction BeginAppend(string contextId);

    /// <summary>
    /// Pins a consistent view of one layer for a query (promoting its blocks to the CPU tier). <paramref name="cancellationToken"/>
    /// (the call's deadline or cancellation) stops the disk reads of demoted blocks; what was pinned is let go.
    /// </summary>
    LayerSnapshot OpenLayer(string contextId, int layer, CancellationToken cancellationToken = default);

    /// <summary>Token ids of positions [start, end) of a context.</summary>
    int[] ReadTokenIds(string contextId, long start, long end);

    /// <summary>Longest prefix of <paramref name="tokenIds"/> whose KV is stored in every layer, in that model and namespace.</summary>
    long LookupPrefix(string model, string ns, ReadOnlySpan<int> tokenIds);

    /// <summary>The directory of persistent data (null when memory only); other components keep their files under it.</summary>
    string? DataDirectory { get; }

    /// <summary>
    /// True while some context still holds the full block with this address and content checksum (shared or private):
    /// files derived from a block (index segments) are garbage once it is gone.
    /// </summary>
    bool HoldsBlock(BlockAddress address, ulong checksum);

    /// <summary>Counters for operators.</summary>
    StoreStats GetStats();

    /// <summary>Block events (stored, removed, demoted, promoted) for routers and dashboards.</summary>
    Events.KvEventHub Events { get; }

    /// <summary>Demotes cold unpinned blocks to the disk tier until the CPU tier holds at most <paramref name="targetCpuBytes"/>.</summary>
    (long Blocks, long Bytes) Evict(long targetCpuBytes);

    /// <summary>Writes a checkpoint now (FAILED_PRECONDITION when memory only).</summary>
    CheckpointResult Checkpoint();

    /// <summary>Gives the disk space of freed blocks back now: compacts the disk block log (FAILED_PRECONDITION when memory only).</summary>
    CompactionResult Compact();
}

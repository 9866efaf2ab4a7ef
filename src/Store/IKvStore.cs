namespace KvDb.Store;

/// <summary>The store seam: models, contexts, transactional appends and pinned reads of layers.</summary>
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
    ContextInfo CreateContext(string model, string ns, string? id, ReadOnlySpan<int> prefixTokenIds);

    /// <summary>Returns a context or throws NOT_FOUND.</summary>
    ContextInfo GetContext(string id);

    /// <summary>Deletes a context; false when it did not exist.</summary>
    bool DeleteContext(string id);

    /// <summary>Opens the single append transaction of a context (FAILED_PRECONDITION if one is open).</summary>
    IAppendTransaction BeginAppend(string contextId);

    /// <summary>Pins a consistent view of one layer for a query.</summary>
    LayerSnapshot OpenLayer(string contextId, int layer);

    /// <summary>Longest prefix of <paramref name="tokenIds"/> whose KV is stored in every layer of some context of that model and namespace.</summary>
    long LookupPrefix(string model, string ns, ReadOnlySpan<int> tokenIds);

    /// <summary>Counters for operators.</summary>
    StoreStats GetStats();
}

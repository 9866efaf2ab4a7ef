namespace KvDb.Index.Catalog;

/// <summary>
/// What a <see cref="LayerIndexCatalog"/> did: segment builds (and the rows they indexed), extensions of a
/// context's suffix, base segments loaded from disk, bases reused from another context, unreadable index
/// files moved aside, files saved and files garbage-collected.
/// </summary>
public readonly record struct IndexCatalogCounters(
    long Builds,
    long BuiltTokens,
    long Extends,
    long ExtendedTokens,
    long Loads,
    long SharedReuses,
    long CorruptFiles,
    long SavedFiles,
    long CollectedFiles);

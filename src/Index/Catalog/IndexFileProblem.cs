namespace KvDb.Index.Catalog;

/// <summary>What went wrong with an index file.</summary>
public enum IndexFileProblemKind
{
    /// <summary>The file could not be read (corrupt, truncated, old format); it was moved aside and the segment rebuilt.</summary>
    Unreadable = 1,

    /// <summary>A built segment could not be written; it will be rebuilt after a restart.</summary>
    NotSaved = 2,

    /// <summary>The background collection of unused index files failed.</summary>
    CollectionFailed = 3,
}

/// <summary>
/// A problem the catalog met with its index files: reported in <see cref="LayerIndexCatalog.Problems"/> and in the
/// status of the first view that needed the file. <paramref name="Reason"/> is the I/O or format error's own text.
/// </summary>
public sealed record IndexFileProblem(IndexFileProblemKind Kind, string File, string Reason, string? MovedAsideTo = null);

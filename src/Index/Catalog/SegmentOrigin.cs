namespace KvDb.Index.Catalog;

/// <summary>How a context got its base segment.</summary>
public enum SegmentOrigin
{
    /// <summary>The context has no base segment.</summary>
    None = 0,

    /// <summary>This context's update built it.</summary>
    Built = 1,

    /// <summary>This context's update read it from an index file (after a restart, or after memory forgot it).</summary>
    LoadedFromDisk = 2,

    /// <summary>Another context built or loaded it (same content key); this one reuses it.</summary>
    Shared = 3,
}

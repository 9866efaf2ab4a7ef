namespace KvDb.Index.Catalog;

/// <summary>Where a (context, layer, spec) index stands in the catalog.</summary>
public enum IndexState
{
    /// <summary>Nobody asked for it yet (or the catalog forgot it): no view, no build under way.</summary>
    Absent = 0,

    /// <summary>No view yet; a background build is under way.</summary>
    Building = 1,

    /// <summary>A view is ready (it may cover less than the layer: the rest is the plan's exact tail).</summary>
    Ready = 2,

    /// <summary>No view; the last build failed (the next update request retries).</summary>
    Failed = 3,
}

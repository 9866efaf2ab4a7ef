namespace KvDb.QueryEngine;

/// <summary>How a request wants its tokens chosen; numbering matches kvdb.v1.PlanKind.</summary>
public enum PlanKind
{
    /// <summary>Unset: treated as <see cref="Auto"/>.</summary>
    Unspecified = 0,
    /// <summary>The optimizer picks.</summary>
    Auto = 1,
    /// <summary>Every stored token outside the exclude range.</summary>
    Exact = 2,
}

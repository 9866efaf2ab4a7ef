using KvDb.Index.Catalog;
using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// How one plan kind is made: the index specs it needs (none for exact) and the plan over their ready views.
/// Registered in <see cref="PlanRegistry"/>; the planner knows kinds only through it.
/// </summary>
public interface IPlanFactory
{
    /// <summary>The kind this factory answers.</summary>
    PlanKind Kind { get; }

    /// <summary>The index specs the plan searches, in the order <see cref="Create"/> receives their views.</summary>
    IReadOnlyList<string> IndexSpecs { get; }

    /// <summary>The plan over the ready <paramref name="views"/> of <see cref="IndexSpecs"/>.</summary>
    IAttentionPlan Create(IReadOnlyList<LayerIndexes> views);
}

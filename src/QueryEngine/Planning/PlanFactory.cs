using KvDb.Index.Catalog;
using KvDb.QueryEngine.Plans;

namespace KvDb.QueryEngine.Planning;

/// <summary>A plan factory from a kind, its index specs and a constructor over their views.</summary>
public sealed class PlanFactory(PlanKind kind, IReadOnlyList<string> indexSpecs, Func<IReadOnlyList<LayerIndexes>, IAttentionPlan> create) : IPlanFactory
{
    /// <inheritdoc />
    public PlanKind Kind => kind;

    /// <inheritdoc />
    public IReadOnlyList<string> IndexSpecs => indexSpecs;

    /// <inheritdoc />
    public IAttentionPlan Create(IReadOnlyList<LayerIndexes> views) => create(views);
}

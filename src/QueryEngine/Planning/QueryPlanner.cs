using KvDb.Index.Catalog;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// Chooses the plan for a request. A kind is bound to its plan and index specs in the <see cref="PlanRegistry"/>;
/// a sparse kind runs once every index it needs is ready in the <see cref="LayerIndexCatalog"/> (the planner asks
/// the catalog to keep them current) and is answered exactly until then. AUTO is exact (the cost-based optimizer
/// that will pick sparse plans on its own is not built yet).
/// </summary>
public sealed class QueryPlanner
{
    private readonly LayerIndexCatalog? _catalog;
    private readonly PlanRegistry _registry;

    /// <summary>Creates a planner; without a catalog every sparse kind is answered exactly.</summary>
    public QueryPlanner(LayerIndexCatalog? catalog = null, PlanRegistry? registry = null)
    {
        _catalog = catalog;
        _registry = registry ?? PlanRegistry.Default;
    }

    /// <summary>The plan to run for <paramref name="request"/> over the snapshot's layer, and why.</summary>
    public PlanChoice Choose(PlanRequest request, LayerSnapshot layer, string contextId)
    {
        if (request.Kind is PlanKind.Auto or PlanKind.Unspecified)
        {
            return new PlanChoice(ExactPlan.Instance, PlanDecision.AutoExact, []);
        }

        IPlanFactory factory = _registry.Get(request.Kind);
        if (factory.IndexSpecs.Count == 0)
        {
            return new PlanChoice(factory.Create([]), PlanDecision.Requested, []);
        }

        if (_catalog is null)
        {
            return new PlanChoice(ExactPlan.Instance, PlanDecision.NoCatalog, []);
        }

        var statuses = new IndexStatus[factory.IndexSpecs.Count];
        var views = new LayerIndexes[factory.IndexSpecs.Count];
        PlanDecision decision = PlanDecision.Requested;
        for (int i = 0; i < statuses.Length; i++)
        {
            string spec = factory.IndexSpecs[i];
            _catalog.RequestUpdate(contextId, layer, spec);
            statuses[i] = _catalog.Probe(contextId, layer, spec, out LayerIndexes? view);
            if (view is not null)
            {
                views[i] = view;
            }
            else if (decision == PlanDecision.Requested)
            {
                decision = statuses[i].State == IndexState.Failed ? PlanDecision.IndexFailed : PlanDecision.IndexNotReady;
            }
        }

        return decision == PlanDecision.Requested
            ? new PlanChoice(factory.Create(views), decision, statuses)
            : new PlanChoice(ExactPlan.Instance, decision, statuses);
    }
}

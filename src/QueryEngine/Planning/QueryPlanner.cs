using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// Chooses the plan for a request. A kind is bound to its plan and index specs in the <see cref="PlanRegistry"/>;
/// a sparse kind runs once every index it needs is ready in the <see cref="LayerIndexCatalog"/> (the planner asks
/// the catalog to keep them current) and is answered exactly until then; DIPR scans until its index is ready. AUTO runs
/// <see cref="VerifiedSamplingPlan"/> under the request's quality contract (or the default) once the heavy-hitter
/// index (<see cref="AutoHeavySpec"/>) is ready, deciding exact vs sampled per KV head by the <see cref="CostModel"/>
/// and the <see cref="HeadStatistics"/>; it is exact until the index is ready and never waits for a build.
/// </summary>
public sealed class QueryPlanner
{
    /// <summary>The index AUTO names heavy hitters with: the centroid index CENTROID_TOP_K also searches (built once for both).</summary>
    public const string AutoHeavySpec = "centroid:L2";

    /// <summary>The name AUTO's sampled plan reports (<see cref="VerifiedSamplingPlan.Name"/> over <see cref="AutoHeavySpec"/>), for the explain when it did not run.</summary>
    public const string AutoName = "auto:" + AutoHeavySpec;

    private readonly LayerIndexCatalog? _catalog;
    private readonly PlanRegistry _registry;

    /// <summary>
    /// Creates a planner; without a catalog every sparse kind (and AUTO) is answered exactly. AUTO applies
    /// <paramref name="defaultQuality"/> (default <see cref="QualityContract.Default"/>) to requests that set none.
    /// </summary>
    public QueryPlanner(LayerIndexCatalog? catalog = null, PlanRegistry? registry = null, CostModel? costs = null, HeadStatistics? statistics = null, QualityContract? defaultQuality = null)
    {
        _catalog = catalog;
        _registry = registry ?? PlanRegistry.Default;
        Costs = costs ?? CostModel.Default;
        Statistics = statistics ?? new HeadStatistics();
        DefaultQuality = (defaultQuality ?? QualityContract.Default).Validated();
    }

    /// <summary>The read costs AUTO compares plans by.</summary>
    public CostModel Costs { get; }

    /// <summary>What AUTO remembers per (context, layer, KV head).</summary>
    public HeadStatistics Statistics { get; }

    /// <summary>The contract AUTO applies when a request sets none.</summary>
    public QualityContract DefaultQuality { get; }

    /// <summary>
    /// The plan to run for <paramref name="request"/> over the snapshot's layer, and why. With
    /// <paramref name="estimateSetAside"/> AUTO also probes the indexes of the fixed-budget plans it sets aside so the
    /// explain can estimate them (Explain asks for it; a plain Attend lists them by name and reason only).
    /// </summary>
    public PlanChoice Choose(PlanRequest request, LayerSnapshot layer, string contextId, bool estimateSetAside = true)
    {
        if (request.Kind is PlanKind.Auto or PlanKind.Unspecified)
        {
            return ChooseAuto(request, layer, contextId, estimateSetAside);
        }

        IPlanFactory factory = _registry.Get(request.Kind);
        if (request.Kind == PlanKind.Dipr)
        {
            return ChooseDipr(factory, layer, contextId);
        }

        if (factory.IndexSpecs.Count == 0)
        {
            return new PlanChoice(factory.Create([]), PlanDecision.Requested, []);
        }

        if (_catalog is null)
        {
            return new PlanChoice(ExactPlan.Instance, PlanDecision.NoCatalog, []) { SetAside = [new SetAsidePlan(request.Kind, NameOf(factory), LostBecause.NoCatalog)] };
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
            : new PlanChoice(ExactPlan.Instance, decision, statuses) { SetAside = [new SetAsidePlan(request.Kind, NameOf(factory), Lost(decision))] };
    }

    /// <summary>
    /// DIPR never falls back to exact: without a ready range-search view its plan scans the keys (the factory gets no
    /// views); with one it range-searches. Either way the view is kept current for the next request.
    /// </summary>
    private PlanChoice ChooseDipr(IPlanFactory factory, LayerSnapshot layer, string contextId)
    {
        if (_catalog is null || factory.IndexSpecs.Count == 0)
        {
            return new PlanChoice(factory.Create([]), PlanDecision.Requested, []);
        }

        string spec = factory.IndexSpecs[0];
        _catalog.RequestUpdate(contextId, layer, spec);
        IndexStatus status = _catalog.Probe(contextId, layer, spec, out LayerIndexes? view);
        return new PlanChoice(factory.Create(view is null ? [] : [view]), PlanDecision.Requested, [status]);
    }

    private PlanChoice ChooseAuto(PlanRequest request, LayerSnapshot layer, string contextId, bool estimateSetAside)
    {
        if (_catalog is null)
        {
            return new PlanChoice(ExactPlan.Instance, PlanDecision.NoCatalog, []) { SetAside = [new SetAsidePlan(PlanKind.Auto, AutoName, LostBecause.NoCatalog), .. FixedBudget(layer, contextId, estimateSetAside)] };
        }

        // The smallest sampled answer: sinks, a minimal heavy set per query row, the pilot; below it exact costs less.
        AttentionGeometry g = layer.Model.Geometry;
        long smallest = AttentionSinks.Count + ((long)g.NumQueryHeads * VerifiedSamplingPlan.MinHeavyPerRow / g.NumKvHeads) + VerifiedSamplingPlan.PilotSize;
        if (Costs.StreamMicros(layer.Tokens, g.RowBytes) <= Costs.GatherMicros(smallest, g.RowBytes))
        {
            var smallestEstimate = new PlanEstimate(smallest, smallest * 2L * g.RowBytes);
            return new PlanChoice(ExactPlan.Instance, PlanDecision.AutoExactCheaper, [])
            {
                SetAside = [new SetAsidePlan(PlanKind.Auto, AutoName, LostBecause.Costlier, Estimate: smallestEstimate), .. FixedBudget(layer, contextId, estimateSetAside)],
            };
        }

        _catalog.RequestUpdate(contextId, layer, AutoHeavySpec);
        IndexStatus status = _catalog.Probe(contextId, layer, AutoHeavySpec, out LayerIndexes? view);
        if (view is null)
        {
            PlanDecision notReady = status.State == IndexState.Failed ? PlanDecision.IndexFailed : PlanDecision.IndexNotReady;
            return new PlanChoice(ExactPlan.Instance, notReady, [status]) { SetAside = [new SetAsidePlan(PlanKind.Auto, AutoName, Lost(notReady)), .. FixedBudget(layer, contextId, estimateSetAside)] };
        }

        var plan = new VerifiedSamplingPlan(view, request.Quality ?? DefaultQuality, Costs, Statistics, contextId);
        return new PlanChoice(plan, PlanDecision.AutoSampled, [status]) { SetAside = FixedBudget(layer, contextId, estimateSetAside) };
    }

    /// <summary>
    /// For the explain only: the kinds with a fixed budget, which AUTO never runs because they bound nothing and an AUTO
    /// request always carries a tolerance. Each is made over its views when the catalog already has them ready (a probe
    /// only: AUTO starts no build for them) so that its estimate can be shown; DIPR always can (a flat scan without its
    /// view).
    /// </summary>
    private List<SetAsidePlan> FixedBudget(LayerSnapshot layer, string contextId, bool estimate)
    {
        var set = new List<SetAsidePlan>();
        foreach (IPlanFactory factory in _registry.Factories)
        {
            if (factory.Kind is PlanKind.Exact or PlanKind.Auto or PlanKind.Unspecified)
            {
                continue;
            }

            IAttentionPlan? plan = estimate ? ReadyPlan(factory, layer, contextId) : null;
            set.Add(new SetAsidePlan(factory.Kind, plan?.Name ?? NameOf(factory), LostBecause.NoQualityGuarantee, plan));
        }

        return set;
    }

    /// <summary>The factory's plan over views that are ready now (DIPR: a scan without one); null when a view is missing.</summary>
    private IAttentionPlan? ReadyPlan(IPlanFactory factory, LayerSnapshot layer, string contextId)
    {
        var views = new LayerIndexes[factory.IndexSpecs.Count];
        for (int i = 0; i < views.Length; i++)
        {
            LayerIndexes? view = null;
            _catalog?.Probe(contextId, layer, factory.IndexSpecs[i], out view);
            if (view is null)
            {
                return factory.Kind == PlanKind.Dipr ? factory.Create([]) : null;
            }

            views[i] = view;
        }

        return factory.Create(views);
    }

    /// <summary>The name a kind's plan reports, for a plan that could not be made (its views are not ready).</summary>
    private static string NameOf(IPlanFactory factory) => factory.Kind switch
    {
        PlanKind.BlockTopK or PlanKind.CentroidTopK or PlanKind.LshTopK or PlanKind.AnnTopK when factory.IndexSpecs.Count == 1 => $"indexed:{factory.IndexSpecs[0]}",
        PlanKind.LshSampling => $"lsh-sampling:{string.Join('+', factory.IndexSpecs)}",
        PlanKind.Dipr => "dipr:scan",
        _ => factory.IndexSpecs.Count == 0 ? factory.Kind.ToString() : $"{factory.Kind}:{string.Join('+', factory.IndexSpecs)}",
    };

    private static LostBecause Lost(PlanDecision decision) => decision switch
    {
        PlanDecision.IndexFailed => LostBecause.IndexFailed,
        PlanDecision.NoCatalog => LostBecause.NoCatalog,
        _ => LostBecause.IndexNotReady,
    };
}

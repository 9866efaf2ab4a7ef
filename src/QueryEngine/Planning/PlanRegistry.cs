using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// The one place plan kinds are bound to plans and the index specs they search. <see cref="Default"/> holds the
/// wire's kinds; a test or a later optimizer can register more.
/// </summary>
public sealed class PlanRegistry
{
    /// <summary>
    /// The LSH sampling plan's sampling index: plain SimHash planes (query-shaped ones sample far more keys), its
    /// own seed, and MagicPIG's larger setting (K=10, L=150: more tables keep the estimator's variance down; the
    /// top-k default K=8, L=75 is for ranking).
    /// </summary>
    public const string LshSampleSpec = "lsh:K=10,L=150,Q=0,S=7";

    /// <summary>The LSH sampling plan's heavy-hitter index: the query-shaped LSH index of LSH_TOP_K, ranked by collision count.</summary>
    public const string LshHeavySpec = "lsh";

    /// <summary>
    /// DIPR's range-search index: Quest block summaries, the family whose bounds answer
    /// <see cref="KvDb.Index.IRangeSearchIndex.AtLeast"/> exactly (and the one BLOCK_TOP_K builds, so both share it).
    /// DIPR runs without it (a flat scan); its factory then gets no views.
    /// </summary>
    public const string DiprRangeSpec = "block";

    private readonly Dictionary<PlanKind, IPlanFactory> _factories = [];

    /// <summary>The wire's plan kinds: EXACT, the four indexed top-k kinds, LSH sampling and DIPR.</summary>
    public static PlanRegistry Default { get; } = CreateDefault();

    /// <summary>Binds <paramref name="factory"/>'s kind (replacing an earlier binding).</summary>
    public PlanRegistry Register(IPlanFactory factory)
    {
        _factories[factory.Kind] = factory;
        return this;
    }

    /// <summary>Every binding, by kind.</summary>
    public IEnumerable<IPlanFactory> Factories => _factories.Values.OrderBy(f => f.Kind);

    /// <summary>The factory of <paramref name="kind"/>; an invalid-argument <see cref="KvDbException"/> naming the kinds otherwise.</summary>
    public IPlanFactory Get(PlanKind kind) => _factories.TryGetValue(kind, out IPlanFactory? f)
        ? f
        : throw KvDbException.Invalid($"plan kind {(int)kind} is not supported; send PLAN_KIND_AUTO, PLAN_KIND_EXACT or a sparse kind (3–8)");

    /// <summary>The index spec a single-index kind searches (the first of its specs).</summary>
    public string SpecOf(PlanKind kind) => Get(kind).IndexSpecs is [string spec, ..]
        ? spec
        : throw KvDbException.Invalid($"plan kind {kind} searches no index");

    private static PlanRegistry CreateDefault()
    {
        var r = new PlanRegistry();
        r.Register(new PlanFactory(PlanKind.Exact, [], _ => ExactPlan.Instance));
        r.Register(Indexed(PlanKind.BlockTopK, "block"));
        r.Register(Indexed(PlanKind.CentroidTopK, "centroid:L2"));
        r.Register(Indexed(PlanKind.LshTopK, "lsh"));
        r.Register(Indexed(PlanKind.AnnTopK, "graph"));
        r.Register(new PlanFactory(PlanKind.LshSampling, [LshSampleSpec, LshHeavySpec], v => new LshSamplingPlan(v[0], v[1])));
        r.Register(new PlanFactory(PlanKind.Dipr, [DiprRangeSpec], v => new DiprPlan(v.Count > 0 ? v[0] : null)));
        return r;
    }

    private static PlanFactory Indexed(PlanKind kind, string spec) => new(kind, [spec], v => new IndexedPlan(v[0]));
}

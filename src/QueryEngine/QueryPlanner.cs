using KvDb.QueryEngine.Execution;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// Chooses the plan for a request and says why. Sparse kinds run over indexes from the
/// <see cref="LayerIndexCatalog"/> once they are built and answer exactly until then; AUTO is exact (the
/// cost-based optimizer that would pick sparse plans on its own is not built yet).
/// </summary>
public sealed class QueryPlanner
{
    private readonly ExactPlan _exact;
    private readonly LayerIndexCatalog? _catalog;

    /// <summary>Creates a planner; without a catalog every sparse kind is answered exactly, without <paramref name="device"/> exact plans run on the CPU.</summary>
    public QueryPlanner(LayerIndexCatalog? catalog = null, DeviceAttention? device = null)
    {
        _catalog = catalog;
        _exact = new ExactPlan(device);
    }

    /// <summary>Returns the plan to run and a one-line explanation.</summary>
    public (IAttentionPlan Plan, string Explain) Choose(PlanRequest request, LayerSnapshot layer, string contextId)
    {
        switch (request.Kind)
        {
            case PlanKind.Exact:
                return (_exact, $"exact requested: all {layer.Tokens} tokens of layer {layer.Layer}");
            case PlanKind.Auto or PlanKind.Unspecified:
                return (_exact, $"auto: exact over {layer.Tokens} tokens of layer {layer.Layer} (sparse plans run when requested by kind)");
            case PlanKind.BlockTopK or PlanKind.CentroidTopK or PlanKind.LshTopK or PlanKind.AnnTopK:
            {
                string spec = IndexedPlan.SpecFor(request.Kind);
                if (_catalog is null)
                {
                    return (_exact, $"{request.Kind}: no index catalog configured; exact over {layer.Tokens} tokens");
                }

                LayerIndexes? indexes = _catalog.Get(contextId, layer, spec, out string status);
                return indexes is null
                    ? (_exact, $"{request.Kind}: {status}; exact over {layer.Tokens} tokens meanwhile")
                    : (new IndexedPlan(indexes), $"{request.Kind}: {status}; sinks always attended");
            }

            case PlanKind.LshSampling:
            {
                if (_catalog is null)
                {
                    return (_exact, $"{request.Kind}: no index catalog configured; exact over {layer.Tokens} tokens");
                }

                LayerIndexes? lsh = _catalog.Get(contextId, layer, LshSamplingPlan.SampleSpec, out string lshStatus);
                LayerIndexes? heavy = _catalog.Get(contextId, layer, LshSamplingPlan.HeavySpec, out string heavyStatus);
                return lsh is null || heavy is null
                    ? (_exact, $"{request.Kind}: {(lsh is null ? lshStatus : heavyStatus)}; exact over {layer.Tokens} tokens meanwhile")
                    : (new LshSamplingPlan(lsh, heavy), $"{request.Kind}: LSH heavy hitters exact, MagicPIG sampling of the rest; {lshStatus}");
            }

            default:
                throw KvDbException.Invalid($"plan kind {(int)request.Kind} is not supported; send PLAN_KIND_AUTO, PLAN_KIND_EXACT or a sparse kind (3–7)");
        }
    }
}

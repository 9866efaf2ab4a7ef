using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>Chooses the plan for a request and says why; with only the exact plan built, AUTO resolves to exact.</summary>
public sealed class QueryPlanner
{
    private readonly ExactPlan _exact = new();

    /// <summary>Returns the plan to run and a one-line explanation.</summary>
    public (IAttentionPlan Plan, string Explain) Choose(PlanRequest request, LayerSnapshot layer) => request.Kind switch
    {
        PlanKind.Exact => (_exact, $"exact requested: all {layer.Tokens} tokens of layer {layer.Layer}"),
        PlanKind.Auto or PlanKind.Unspecified => (_exact, $"auto: no sparse index is built for layer {layer.Layer}, so exact over {layer.Tokens} tokens"),
        _ => throw KvDbException.Invalid($"plan kind {(int)request.Kind} is not supported; send PLAN_KIND_AUTO or PLAN_KIND_EXACT"),
    };
}

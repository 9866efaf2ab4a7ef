using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// Attends to every stored token outside the exclude range: the reference every sparse plan is judged against.
/// Its selection is dense, which the attend phase runs with the exact kernels (on the GPU tier's mirrors when
/// the layer is there).
/// </summary>
public sealed class ExactPlan : IAttentionPlan
{
    /// <summary>The one instance (the plan has no state).</summary>
    public static ExactPlan Instance { get; } = new();

    /// <inheritdoc />
    public string Name => "exact";

    /// <inheritdoc />
    public PlanEstimate Estimate(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        long rows = layer.Tokens - query.Exclude.CountWithin(layer.Tokens);
        return new PlanEstimate(rows, rows * 2L * layer.Model.Geometry.RowBytes);
    }

    /// <inheritdoc />
    public HeadSelection Select(LayerSnapshot layer, AttentionQuery query, int kvHead) => HeadSelection.Dense;
}

using KvDb.Kernels;
using KvDb.QueryEngine.Execution;
using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// Attends to every stored token outside the exclude range: the reference every sparse plan is judged against.
/// With the store's GPU tier on and a <see cref="DeviceAttention"/> given, the layer's blocks are mirrored there
/// and the CUDA kernel reads them in place (block-paged layout); when they do not all fit, or a CUDA call fails,
/// the CPU kernel runs instead.
/// </summary>
public sealed class ExactPlan : IAttentionPlan
{
    private readonly DeviceAttention? _device;

    /// <summary>An exact plan; without <paramref name="device"/> it always runs the CPU kernel.</summary>
    public ExactPlan(DeviceAttention? device = null)
    {
        _device = device;
    }

    /// <inheritdoc />
    public string Name => "exact";

    /// <inheritdoc />
    public AttentionCounters Execute(LayerSnapshot layer, AttentionQuery query, Span<float> output, Span<float> lse)
    {
        if (_device is not null && _device.TryRun(layer, query.Queries, query.NumQueries, query.ExcludeStart, query.ExcludeEnd, output, lse, out AttentionCounters counters, out _))
        {
            return counters;
        }

        return ExactAttentionKernel.Run(layer.Model.Geometry, layer.Blocks, query.Queries, query.NumQueries, query.ExcludeStart, query.ExcludeEnd, output, lse);
    }

    /// <inheritdoc />
    public (long[] Selected, int[] Counts) Selection(LayerSnapshot layer, AttentionQuery query)
    {
        int heads = layer.Model.NumKvHeads;
        long xs = query.ExcludeEnd > query.ExcludeStart ? Math.Clamp(query.ExcludeStart, 0, layer.Tokens) : 0;
        long xe = query.ExcludeEnd > query.ExcludeStart ? Math.Clamp(query.ExcludeEnd, 0, layer.Tokens) : 0;
        long perHead = layer.Tokens - (xe - xs);
        if (perHead * heads > int.MaxValue / 2)
        {
            throw KvDbException.Invalid($"return_selection of an exact plan over {perHead} tokens × {heads} heads is too large; ask without return_selection or exclude more tokens");
        }

        var selected = new long[perHead * heads];
        var counts = new int[heads];
        int k = 0;
        for (int h = 0; h < heads; h++)
        {
            for (long p = 0; p < layer.Tokens; p++)
            {
                if (p < xs || p >= xe)
                {
                    selected[k++] = p;
                }
            }

            counts[h] = (int)perHead;
        }

        return (selected, counts);
    }
}

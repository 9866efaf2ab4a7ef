using KvDb.Kernels;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Plans;
using KvDb.Store;

namespace KvDb.QueryEngine.Execution;

/// <summary>
/// The attend phase: runs the kernels over the selections the plans made, one per KV head, and counts what they
/// read. A layer whose every head is dense runs the exact kernel once for all heads — on the GPU tier's mirrors
/// when the store has the layer there (a CUDA failure falls back to the CPU: the CPU copy is authoritative),
/// otherwise on the CPU; gathered heads run the gathered kernel with their positions and log-weights.
/// </summary>
public static class SelectionAttention
{
    /// <summary>
    /// Fills <paramref name="output"/> [q, num_query_heads, head_dim] and <paramref name="lse"/> [q, num_query_heads];
    /// returns the kernels' counters plus what the selections read, and where it ran. Without <paramref name="gpu"/> it runs on the CPU.
    /// </summary>
    public static AttentionCounters Run(LayerSnapshot layer, AttentionQuery query, IReadOnlyList<HeadSelection> heads, DeviceAttention? gpu, Span<float> output, Span<float> lse, out DeviceOutcome device) =>
        Run(layer, query, heads, gpu, output, lse, out device, Environment.ProcessorCount);

    /// <summary>As above, deciding how to stream several dense heads as if the machine had <paramref name="cores"/> cores (tests take each path).</summary>
    public static AttentionCounters Run(LayerSnapshot layer, AttentionQuery query, IReadOnlyList<HeadSelection> heads, DeviceAttention? gpu, Span<float> output, Span<float> lse, out DeviceOutcome device, int cores)
    {
        AttentionGeometry g = layer.Model.Geometry;
        if (heads.Count != g.NumKvHeads)
        {
            throw new ArgumentException($"need one selection per KV head ({g.NumKvHeads}), got {heads.Count}", nameof(heads));
        }

        (long xs, long xe) = query.Exclude.Normalized;
        if (AllDense(heads))
        {
            // What deciding to go dense read (AUTO's heavy part and pilot of a diffuse head) counts too.
            var deciding = default(AttentionCounters);
            foreach (HeadSelection h in heads)
            {
                deciding += new AttentionCounters(h.Scanned, 0, h.ScannedBytes);
            }

            if (gpu is not null && gpu.TryRun(layer, query.Queries, query.NumQueries, xs, xe, output, lse, out AttentionCounters onDevice, out device))
            {
                return onDevice + deciding;
            }

            device = DeviceOutcome.OnCpu(layer.DeviceReason);

            return ExactAttentionKernel.Run(g, layer.Blocks, query.Queries, query.NumQueries, xs, xe, output, lse, query.Cancellation) + deciding;
        }

        device = DeviceOutcome.OnCpu(layer.DeviceReason);
        var counters = default(AttentionCounters);

        // Several dense heads among computed ones (AUTO on a layer with diffuse heads) stream their rows in one call
        // that runs the heads in parallel; one at a time they would take a core each, in turn. The call writes every
        // head's group (empty ones as no rows); the computed and gathered heads below overwrite theirs.
        int dense = DenseCount(heads);
        bool denseTogether = dense > 1;
        if (denseTogether && dense * 2 >= g.NumKvHeads && dense < cores)
        {
            // Mostly dense and fewer dense heads than cores: one head per core would leave cores idle, so stream the
            // whole layer split into token ranges over every core, reading the few other heads' rows too.
            counters += ExactAttentionKernel.Run(g, layer.Blocks, query.Queries, query.NumQueries, xs, xe, output, lse, query.Cancellation);
        }
        else if (denseTogether)
        {
            var runs = new List<KvRowRun>();
            var offsets = new int[g.NumKvHeads + 1];
            for (int kv = 0; kv < g.NumKvHeads; kv++)
            {
                offsets[kv] = runs.Count;
                if (heads[kv].IsDense && heads[kv].Partial is null)
                {
                    KvRowRun.AppendAllExcept(layer.Blocks, xs, xe, runs);
                }
            }

            offsets[g.NumKvHeads] = runs.Count;
            counters += ExactAttentionKernel.RunSelected(g, layer.Blocks, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(runs), offsets, query.Queries, query.NumQueries, output, lse);
        }

        for (int kv = 0; kv < g.NumKvHeads; kv++)
        {
            query.Cancellation.ThrowIfSet();
            HeadSelection head = heads[kv];
            if (head.Partial is GroupPartial partial)
            {
                CopyGroup(g, query.NumQueries, kv, partial, output, lse);
                counters += partial.Counters;
            }
            else if (head.IsDense)
            {
                if (denseTogether)
                {
                    counters += new AttentionCounters(head.Scanned, 0, head.ScannedBytes);
                    continue;
                }

                // A dense head among gathered ones (a per-head plan mix) streams its rows as runs: no position list.
                counters += ExactAttentionKernel.RunHead(g, layer.Blocks, kv, xs, xe, query.Queries, query.NumQueries, output, lse);
            }
            else
            {
                counters += GatheredAttentionKernel.Run(g, layer.Blocks, kv, head.Positions, query.Queries, query.NumQueries, head.LogWeights ?? ReadOnlySpan<float>.Empty, output, lse);
            }

            counters += new AttentionCounters(head.Scanned, 0, head.ScannedBytes);
        }

        return counters;
    }

    /// <summary>Writes a computed group's rows into the request's output [q, heads, dim] and lse [q, heads].</summary>
    private static void CopyGroup(in AttentionGeometry g, int numQueries, int kvHead, GroupPartial partial, Span<float> output, Span<float> lse)
    {
        int d = g.HeadDim;
        int rows = numQueries * g.GroupSize;
        for (int r = 0; r < rows; r++)
        {
            long head = g.QueryHead(r / g.GroupSize, kvHead, r % g.GroupSize);
            partial.Output.AsSpan(r * d, d).CopyTo(output.Slice((int)(head * d), d));
            lse[(int)head] = partial.Lse[r];
        }
    }

    /// <summary>Every position of a layer of <paramref name="tokens"/> tokens outside <paramref name="exclude"/>, ascending.</summary>
    public static long[] DensePositions(long tokens, ExcludeRange exclude)
    {
        var positions = new long[tokens - exclude.CountWithin(tokens)];
        int k = 0;
        for (long p = 0; p < tokens; p++)
        {
            if (!exclude.Contains(p))
            {
                positions[k++] = p;
            }
        }

        return positions;
    }

    private static int DenseCount(IReadOnlyList<HeadSelection> heads)
    {
        int dense = 0;
        foreach (HeadSelection h in heads)
        {
            dense += h.IsDense && h.Partial is null ? 1 : 0;
        }

        return dense;
    }

    private static bool AllDense(IReadOnlyList<HeadSelection> heads)
    {
        foreach (HeadSelection h in heads)
        {
            if (!h.IsDense)
            {
                return false;
            }
        }

        return true;
    }
}

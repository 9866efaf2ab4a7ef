namespace KvDb.Kernels.Cuda;

/// <summary>
/// The requests of one batched attention launch (<see cref="CudaAttentionBackend.AttentionBatchAsync"/>),
/// checked and copied to the device once: many concurrent decode requests (or layers) that share a geometry,
/// a layout and a mode (all gathered or all dense), each with its own K/V, selection, queries, outputs and
/// exclude range. One launch serves them all, so the per-launch latency is paid once per batch.
/// <para>
/// The descriptors live in device memory owned here; the K/V, selections, queries and outputs they point to
/// stay owned by the caller, who keeps them alive and unchanged (and gathered positions below each source's
/// token count) until the launches that use this batch have finished.
/// </para>
/// </summary>
public sealed unsafe class GpuAttentionBatch : IDisposable
{
    private DeviceBuffer? _descriptors;

    /// <summary>
    /// Checks <paramref name="requests"/> against <paramref name="geometry"/> (throws <see cref="ArgumentException"/>
    /// naming the request and what was wrong, before any device work) and uploads their descriptors.
    /// </summary>
    public GpuAttentionBatch(in AttentionGeometry geometry, ReadOnlySpan<GpuAttentionRequest> requests, int numQueries, int device = 0)
    {
        KvdbAttnRequest[] descriptors = Describe(geometry, requests, numQueries, out bool gathered, out int maxRows);
        Geometry = geometry;
        Count = requests.Length;
        NumQueries = numQueries;
        Gathered = gathered;
        MaxRows = maxRows;
        Layout = requests[0].Kv.Layout;
        _descriptors = new DeviceBuffer(descriptors.Length * (long)sizeof(KvdbAttnRequest), device);
        _descriptors.Upload<KvdbAttnRequest>(descriptors);
    }

    /// <summary>The geometry every request shares.</summary>
    public AttentionGeometry Geometry { get; }

    /// <summary>Number of requests.</summary>
    public int Count { get; }

    /// <summary>Query tokens per request.</summary>
    public int NumQueries { get; }

    /// <summary>True when every request is gathered, false when every request is dense.</summary>
    public bool Gathered { get; }

    /// <summary>The most rows any request attends for one KV head (sizes the grid).</summary>
    public int MaxRows { get; }

    /// <summary>The layout every request's K/V uses.</summary>
    public GpuKvLayout Layout { get; }

    /// <summary>Device address of the descriptor array (kvdb_attn_request[Count]).</summary>
    public nint Descriptors => _descriptors?.Pointer ?? throw new ObjectDisposedException(nameof(GpuAttentionBatch));

    /// <summary>Frees the device descriptors.</summary>
    public void Dispose()
    {
        _descriptors?.Dispose();
        _descriptors = null;
    }

    private static KvdbAttnRequest[] Describe(in AttentionGeometry geometry, ReadOnlySpan<GpuAttentionRequest> requests, int numQueries, out bool gathered, out int maxRows)
    {
        geometry.Validate();
        if (requests.IsEmpty)
        {
            throw new ArgumentException("a batch needs at least one request", nameof(requests));
        }

        if (numQueries <= 0 || (long)numQueries * requests.Length > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(numQueries), numQueries, $"need 1 ≤ numQueries and requests × numQueries ≤ 65535 (requests: {requests.Length})");
        }

        GpuKvLayout layout = requests[0].Kv.Layout;
        gathered = !requests[0].Selection.IsDense;
        maxRows = 0;
        var descriptors = new KvdbAttnRequest[requests.Length];
        for (int i = 0; i < requests.Length; i++)
        {
            GpuAttentionRequest r = requests[i];
            GpuKvSource kv = r.Kv;
            if (kv.Layout != layout)
            {
                throw new ArgumentException($"request {i}: layout {kv.Layout}, but request 0 uses {layout}; send one batch per layout", nameof(requests));
            }

            if (r.Selection.IsDense == gathered)
            {
                throw new ArgumentException($"request {i}: {(gathered ? "dense" : "gathered")}, but request 0 is {(gathered ? "gathered" : "dense")}; send one batch per mode", nameof(requests));
            }

            if (kv.NumTokens < 0 || kv.NumTokens > int.MaxValue - 65536)
            {
                throw new ArgumentException($"request {i}: NumTokens {kv.NumTokens} is outside [0, int.MaxValue − 65536]", nameof(requests));
            }

            if (layout == GpuKvLayout.Contiguous)
            {
                if (kv.Keys == 0 || kv.Values == 0 || (kv.Keys & 15) != 0 || (kv.Values & 15) != 0)
                {
                    throw new ArgumentException($"request {i}: a contiguous source needs 16-byte aligned device keys and values", nameof(requests));
                }

                if (kv.Capacity != 0 && kv.Capacity < kv.NumTokens)
                {
                    throw new ArgumentException($"request {i}: Capacity {kv.Capacity} is below NumTokens {kv.NumTokens}", nameof(requests));
                }
            }
            else if (kv.BlockTable == 0 || (kv.BlockTable & 7) != 0)
            {
                throw new ArgumentException($"request {i}: a block source needs an 8-byte aligned device block table", nameof(requests));
            }

            if (r.Queries == 0 || r.Output == 0 || r.Lse == 0 || (r.Queries & 15) != 0 || (r.Output & 15) != 0 || (r.Lse & 3) != 0)
            {
                throw new ArgumentException($"request {i}: queries and output must be 16-byte aligned device addresses and lse a 4-byte aligned one", nameof(requests));
            }

            int rows;
            if (gathered)
            {
                if (r.Selection.Offsets == 0 || r.Selection.MaxPerHead < 0)
                {
                    throw new ArgumentException($"request {i}: a gathered selection needs device offsets and MaxPerHead ≥ 0", nameof(requests));
                }

                rows = r.Selection.MaxPerHead;
            }
            else
            {
                rows = (int)kv.NumTokens;
            }

            maxRows = Math.Max(maxRows, rows);
            descriptors[i] = new KvdbAttnRequest
            {
                Keys = kv.Keys,
                Values = kv.Values,
                BlockTable = kv.BlockTable,
                Positions = r.Selection.Positions,
                Offsets = r.Selection.Offsets,
                Queries = r.Queries,
                Output = r.Output,
                Lse = r.Lse,
                NumTokens = kv.NumTokens,
                KvCapacity = kv.Capacity,
                ExcludeStart = r.ExcludeStart,
                ExcludeEnd = r.ExcludeEnd,
            };
        }

        if (maxRows > int.MaxValue - 65536)
        {
            throw new ArgumentException($"a request attends {maxRows} rows per head, more than int.MaxValue − 65536", nameof(requests));
        }

        return descriptors;
    }
}

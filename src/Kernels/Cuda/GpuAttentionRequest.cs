namespace KvDb.Kernels.Cuda;

/// <summary>
/// One request of a batched attention launch (<see cref="GpuAttentionBatch"/>): its K/V and selection on the
/// device, its device queries f32 [numQueries, Hq, d] and outputs (f32 [numQueries, Hq, d] and LSE
/// [numQueries, Hq]), and the positions [<see cref="ExcludeStart"/>, <see cref="ExcludeEnd"/>) it must not attend.
/// </summary>
public readonly record struct GpuAttentionRequest(
    GpuKvSource Kv,
    GpuSelection Selection,
    nint Queries,
    nint Output,
    nint Lse,
    long ExcludeStart = 0,
    long ExcludeEnd = 0);

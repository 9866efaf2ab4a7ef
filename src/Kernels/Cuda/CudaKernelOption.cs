namespace KvDb.Kernels.Cuda;

/// <summary>Process-wide kernel choices of libkvdbcuda.so (KVDB_OPTION_* of kvdb_cuda.h), for benchmarks and A/B tests.</summary>
public enum CudaKernelOption
{
    /// <summary>Attention main loop: 0 = register pipeline (default), 1 = cp.async shared-memory ring.</summary>
    AttentionVariant = 1,

    /// <summary>Gathered attention over blocks: 1 = block-table entries fetched a tile ahead of the rows (default), 0 = with the rows.</summary>
    TableAhead = 2,
}

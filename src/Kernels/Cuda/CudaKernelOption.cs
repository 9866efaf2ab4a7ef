namespace KvDb.Kernels.Cuda;

/// <summary>Process-wide kernel choices of libkvdbcuda.so (KVDB_OPTION_* of kvdb_cuda.h), for benchmarks and A/B tests.</summary>
public enum CudaKernelOption
{
    /// <summary>Attention main loop: 0 = register pipeline (default), 1 = cp.async shared-memory ring.</summary>
    AttentionVariant = 1,

    /// <summary>Batched gathered attention: 1 = each CTA prefetches its positions and a share of the block table into L2 at its start (default), 0 = off.</summary>
    GatherPrefetch = 2,
}

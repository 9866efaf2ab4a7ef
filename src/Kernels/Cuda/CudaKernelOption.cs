namespace KvDb.Kernels.Cuda;

/// <summary>Process-wide kernel choices of libkvdbcuda.so (KVDB_OPTION_* of kvdb_cuda.h), for benchmarks and A/B tests.</summary>
public enum CudaKernelOption
{
    /// <summary>Attention main loop: 0 = register pipeline (default), 1 = cp.async shared-memory ring.</summary>
    AttentionVariant = 1,

    /// <summary>Gathered attention: 1 = each CTA prefetches a share of the block table (batched launches: and its positions) into L2 at its start (default), 0 = off.</summary>
    GatherPrefetch = 2,
}

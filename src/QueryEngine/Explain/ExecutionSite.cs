namespace KvDb.QueryEngine.Explain;

/// <summary>Where the attention kernels read the K/V.</summary>
public enum ExecutionSite
{
    /// <summary>The CPU kernels over the store's native blocks.</summary>
    Cpu = 0,

    /// <summary>The CUDA kernels over the layer's mirrors in the store's GPU tier.</summary>
    Gpu = 1,
}

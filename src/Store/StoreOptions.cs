namespace KvDb.Store;

/// <summary>Configuration of the KV store; every default works without a config file.</summary>
public sealed record StoreOptions
{
    /// <summary>Bytes of K/V the CPU tier may hold; 0 = half of the memory available to the process.</summary>
    public long CpuBudgetBytes { get; init; }

    /// <summary>Directory for persistent data; null = memory only (nothing survives a restart).</summary>
    public string? DataDirectory { get; init; }

    /// <summary>The CPU budget with the default resolved.</summary>
    public long ResolvedCpuBudgetBytes =>
        CpuBudgetBytes > 0 ? CpuBudgetBytes : Math.Max(64L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2);
}

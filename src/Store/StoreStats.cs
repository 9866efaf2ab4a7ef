namespace KvDb.Store;

/// <summary>Counters an operator reads to see what the store holds.</summary>
public sealed record StoreStats(int Models, int Contexts, long Blocks, long CpuBytes, long CpuBudgetBytes, long LogicalBytes);

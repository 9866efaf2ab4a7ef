namespace KvDb.Store;

/// <summary>What one storage tier holds and how often reads found their block there (hits) or had to go lower (misses).</summary>
public sealed record TierStats(string Name, long Bytes, long Blocks, long Hits, long Misses);

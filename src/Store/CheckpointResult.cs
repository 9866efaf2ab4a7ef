namespace KvDb.Store;

/// <summary>What a checkpoint wrote: contexts and blocks captured, log bytes it let go, and how long it took.</summary>
public sealed record CheckpointResult(long Contexts, long Blocks, long LogBytesTruncated, double Milliseconds);

namespace KvDb.Index;

/// <summary>
/// What one search touched: key rows scored exactly, summary vectors scored (centroids, block bounds,
/// graph entry points are keys and count as keys), and hash-bucket entries visited (LSH).
/// </summary>
public readonly record struct SearchStats(long KeysScored, long SummariesScored, long EntriesTouched)
{
    /// <summary>Key-sized vectors read: the cost measure benchmarks report as "scanned".</summary>
    public long VectorsScanned => KeysScored + SummariesScored;
}

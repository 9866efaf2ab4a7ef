namespace KvDb.Index;

/// <summary>
/// An index whose structure is shaped by the queries it will serve (RetrievalAttention, RoarGraph):
/// queries and keys are distributed differently, so sample queries (e.g. the engine's prefill queries)
/// tell the index which keys must be reachable from which.
/// </summary>
public interface IQueryGuidedIndex : IKeyIndex
{
    /// <summary>Adds sample queries [m, Dimension] that the next <see cref="IKeyIndex.Build"/> or Extend uses.</summary>
    void AddSampleQueries(ReadOnlySpan<float> queries);
}

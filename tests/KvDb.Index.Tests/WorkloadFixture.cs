using System.Collections.Concurrent;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Index.Tests;

/// <summary>
/// One synthetic context shared by the index tests (16K tokens, 2 KV heads × 4 query heads, d = 128,
/// neither head diffuse) with built indexes cached per (spec, head), so each family is built once per run.
/// </summary>
public sealed class WorkloadFixture : IDisposable
{
    private readonly ConcurrentDictionary<(string Spec, int Head), Lazy<IKeyIndex>> _indexes = new();

    /// <summary>Tokens per head.</summary>
    public const int Tokens = 16 * 1024;

    public WorkloadFixture()
    {
        Harness = new IndexQualityHarness(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 2, NumQueryHeads = 8 }, queries: 8, sampleQueries: 512);
    }

    public IndexQualityHarness Harness { get; }

    /// <summary>The index for (spec, head), built on first use with the head's sample queries.</summary>
    public IKeyIndex Index(string spec, int kvHead) =>
        _indexes.GetOrAdd((spec, kvHead), key => new Lazy<IKeyIndex>(() => Harness.Build(key.Spec, key.Head, out _))).Value;

    public void Dispose()
    {
        foreach (Lazy<IKeyIndex> index in _indexes.Values)
        {
            if (index.IsValueCreated)
            {
                index.Value.Dispose();
            }
        }
    }
}

/// <summary>Tests sharing the fixture run in one collection (so sequentially, and the fixture is built once).</summary>
[CollectionDefinition(Name)]
public sealed class WorkloadCollection : ICollectionFixture<WorkloadFixture>
{
    public const string Name = "synthetic workload";
}

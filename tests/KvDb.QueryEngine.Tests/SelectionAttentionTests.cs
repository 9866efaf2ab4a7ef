using KvDb.Core;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// The attend phase over a per-head mix of selections: dense heads streamed one by one, together over heads, or as the
/// whole layer over every core, next to gathered heads. Each way must give the f64 answer over the rows it names.
/// </summary>
public sealed class SelectionAttentionTests : IDisposable
{
    private const int Tokens = 2048;
    private const int QueryHeads = 16;
    private const int KvHeads = 4;
    private const int Dim = 64;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 256L << 20 });
    private readonly string _context;

    public SelectionAttentionTests()
    {
        _store.CreateModel(new ModelSchema("m", 1, QueryHeads, KvHeads, Dim, KvDType.BF16, 64, 0));
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim });
        _context = _store.CreateContext("m", "mix", null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(_context, workload, KvDType.BF16, 0, Tokens);
    }

    public void Dispose() => _store.Dispose();

    [Theory]
    [InlineData(1, 1)] // one dense head: streamed on its own
    [InlineData(2, 16)] // two of four dense, cores to spare: the whole layer, gathered heads overwritten
    [InlineData(3, 2)] // several, fewer cores than dense heads: together, one head per core
    [InlineData(3, 16)] // mostly dense, cores to spare: the whole layer over every core
    public void Dense_and_gathered_heads_each_give_attention_over_their_rows(int denseHeads, int cores)
    {
        using LayerSnapshot layer = _store.OpenLayer(_context, 0);
        var reference = new StoredLayerReference(layer);
        float[] queries = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim }).Queries(2, 5);

        // Gathered heads name the first 1000 rows only: their answer is attention with the rest excluded.
        var first = new long[1000];
        for (int i = 0; i < first.Length; i++)
        {
            first[i] = i;
        }

        var heads = new HeadSelection[KvHeads];
        for (int kv = 0; kv < KvHeads; kv++)
        {
            heads[kv] = kv < denseHeads ? HeadSelection.Dense : HeadSelection.Gathered(first, null, 0, 0);
        }

        var query = new AttentionQuery(_context, 0, queries, 2, 300, 400, PlanRequest.Auto, false);
        var output = new float[queries.Length];
        var lse = new float[2 * QueryHeads];
        SelectionAttention.Run(layer, query, heads, null, output, lse, out _, cores);

        (double[] dense, double[] denseLse) = reference.Attend(queries, 2, 300, 400);
        (double[] gathered, double[] gatheredLse) = reference.Attend(queries, 2, 1000, Tokens);
        int group = QueryHeads / KvHeads;
        for (int h = 0; h < 2 * QueryHeads; h++)
        {
            bool isDense = (h % QueryHeads) / group < denseHeads;
            double[] expected = isDense ? dense : gathered;
            Assert.True(ReferenceAttention.RelativeL2(output.AsSpan(h * Dim, Dim), expected.AsSpan(h * Dim, Dim)) < 1e-4, $"head {h}");
            Assert.Equal((isDense ? denseLse : gatheredLse)[h], lse[h], 3);
        }
    }
}

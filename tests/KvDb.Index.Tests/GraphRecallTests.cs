using KvDb.TestKit;
using Xunit.Abstractions;

namespace KvDb.Index.Tests;

/// <summary>
/// The attention-aware graph against the exact top-k (k = 1% of tokens) on OOD decode queries. At 16K
/// tokens a 3% scan budget gives recall 0.958 and 0.985 on the two heads (the bench has 0.975 at 32K),
/// 6% gives ≥ 0.99; Faiss HNSW16 on the same keys reaches 0.82 only at 32% scanned.
/// </summary>
[Collection(WorkloadCollection.Name)]
public sealed class GraphRecallTests
{
    private readonly WorkloadFixture _fixture;
    private readonly ITestOutputHelper _output;

    public GraphRecallTests(WorkloadFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
    }

    [Fact]
    public void Recall_at_one_percent_is_high_while_scanning_a_few_percent_of_keys()
    {
        IndexQualityHarness h = _fixture.Harness;
        int k = h.TopK;
        double recallSum = 0;
        foreach (int kv in h.KvHeads)
        {
            IKeyIndex graph = _fixture.Index("graph", kv);
            QualityReport tight = h.Measure(graph, kv, new SearchParameters(k, 3 * k));
            QualityReport wide = h.Measure(graph, kv, new SearchParameters(k, 6 * k));
            _output.WriteLine($"head {kv}: scan 3k → {tight.ScannedFraction:P2} scanned, recall {tight.Recall:F3}, mass {tight.Mass:F3}; scan 6k → {wide.ScannedFraction:P2}, recall {wide.Recall:F3}");
            Assert.True(tight.ScannedFraction <= 0.0305, $"scanned {tight.ScannedFraction:P2}");
            Assert.True(tight.Recall >= 0.85, $"recall {tight.Recall:F3} at {tight.ScannedFraction:P2} scanned");
            Assert.True(wide.ScannedFraction <= 0.061, $"scanned {wide.ScannedFraction:P2}");
            Assert.True(wide.Recall >= 0.95, $"recall {wide.Recall:F3} at {wide.ScannedFraction:P2} scanned");
            Assert.True(tight.Mass >= 0.85, $"softmax mass {tight.Mass:F3}");
            recallSum += tight.Recall;
        }

        Assert.True(recallSum / h.KvHeads.Count >= 0.89, $"mean recall {recallSum / h.KvHeads.Count:F3} at 3% scanned");
    }

    [Fact]
    public void Query_guidance_beats_a_plain_key_graph()
    {
        IndexQualityHarness h = _fixture.Harness;
        int k = h.TopK;
        int kv = h.KvHeads[0];
        using var plain = new AttentionGraphIndex(h.Dimension);
        plain.Build(h.Keys(kv), h.Positions);
        QualityReport guided = h.Measure(_fixture.Index("graph", kv), kv, new SearchParameters(k, 3 * k));
        QualityReport unguided = h.Measure(plain, kv, new SearchParameters(k, 3 * k));
        _output.WriteLine($"guided recall {guided.Recall:F3}, key-only recall {unguided.Recall:F3}");
        Assert.True(guided.Recall > unguided.Recall + 0.1, $"guided {guided.Recall:F3} vs key-only {unguided.Recall:F3}");
    }

    [SkippableFact]
    public void Graph_scans_fewer_keys_than_faiss_hnsw_at_equal_recall()
    {
        Skip.IfNot(FaissIndex.IsAvailable, "libkvfaiss.so is not built (run src/Index/native/build.sh)");
        IndexQualityHarness h = _fixture.Harness;
        int k = h.TopK;
        int kv = h.KvHeads[0];
        IKeyIndex hnsw = _fixture.Index("faiss:HNSW16", kv);
        QualityReport? faissAt90 = null;
        foreach (int ef in new[] { 200, 400, 800, 1600, 3200 })
        {
            QualityReport r = h.Measure(hnsw, kv, new SearchParameters(k, 0, ef));
            _output.WriteLine($"faiss HNSW16 ef={ef}: scanned {r.ScannedFraction:P2}, recall {r.Recall:F3}");
            if (r.Recall >= 0.9)
            {
                faissAt90 = r;
                break;
            }
        }

        QualityReport graph = h.Measure(_fixture.Index("graph", kv), kv, new SearchParameters(k, 6 * k));
        _output.WriteLine($"graph: scanned {graph.ScannedFraction:P2}, recall {graph.Recall:F3}");
        Assert.True(graph.Recall >= 0.9);
        Assert.True(faissAt90 is null || graph.ScannedFraction < faissAt90.ScannedFraction, $"graph {graph.ScannedFraction:P2} vs faiss {faissAt90?.ScannedFraction:P2}");
    }
}

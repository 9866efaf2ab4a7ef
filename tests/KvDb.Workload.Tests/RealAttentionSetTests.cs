using Xunit.Abstractions;

namespace KvDb.Workload.Tests;

/// <summary>
/// The committed real-attention set (eval/real-attention) loads with the shapes its manifest promises, its
/// decode queries give finite causal softmaxes, and the manifest's concentration summary is what the C#
/// side recomputes from the float16 files: benchmarks that quote "layer L is peaked" rely on both agreeing.
/// </summary>
public class RealAttentionSetTests(ITestOutputHelper log)
{
    private static RealAttentionSet LoadSet()
    {
        string? manifest = RealAttentionSet.Locate();
        Assert.True(manifest is not null, "eval/real-attention/manifest.json not found above " + AppContext.BaseDirectory);
        return RealAttentionSet.Load(manifest);
    }

    [Fact]
    public void Layers_HaveManifestShapes_AndFiniteValues()
    {
        RealAttentionSet set = LoadSet();
        Assert.Equal(0, set.Heads % set.KvHeads);
        Assert.Contains(set.Sequences, s => s.Dumped);
        Assert.Equal(set.Tokens - 1, set.DecodePositions[^1]);
        Assert.True(set.PrefillPositions.Max() < set.DecodePositions[0]);
        foreach (RealAttentionSequence s in set.Sequences.Where(s => s.Dumped))
        {
            Assert.Equal(set.Tokens, set.TokenIds(s.Index).Length);
            for (int l = 0; l < set.Layers; l++)
            {
                RealAttentionLayer layer = set.Layer(s.Index, l);
                Assert.Equal(set.Tokens * set.KvHeads * set.HeadDim, layer.Keys.Length);
                Assert.Equal(set.Tokens * set.KvHeads * set.HeadDim, layer.Values.Length);
                Assert.Equal(set.DecodePositions.Count * set.Heads * set.HeadDim, layer.DecodeQueries.Length);
                Assert.Equal(set.PrefillPositions.Count * set.Heads * set.HeadDim, layer.PrefillQueries.Length);
                Assert.All(new[] { layer.Keys, layer.Values, layer.DecodeQueries, layer.PrefillQueries }, a => Assert.True(a.All(float.IsFinite)));
                Assert.Contains(layer.Keys, x => x != 0);
            }
        }
    }

    [Fact]
    public void DecodeQuery_CausalSoftmax_IsAFiniteDistribution()
    {
        RealAttentionSet set = LoadSet();
        int seq = set.Sequences.First(s => s.Dumped).Index;
        foreach (int l in new[] { 0, set.Layers - 1 })
        {
            RealAttentionLayer layer = set.Layer(seq, l);
            int last = set.DecodePositions.Count - 1;
            for (int h = 0; h < set.Heads; h++)
            {
                double[] w = layer.DecodeWeights(last, h);
                Assert.Equal(set.DecodePositions[last] + 1, w.Length);
                Assert.All(w, x => Assert.True(double.IsFinite(x) && x >= 0));
                Assert.Equal(1.0, w.Sum(), 1e-9);
            }
        }
    }

    [Fact]
    public void ManifestProbe_TopWeight_MatchesFloat64Recomputation()
    {
        RealAttentionSet set = LoadSet();
        RealAttentionProbe? probe = set.Probe;
        Assert.NotNull(probe);
        Assert.Equal(set.DecodePositions[probe.Query], probe.Position);
        double[] w = set.Layer(probe.Sequence, probe.Layer).DecodeWeights(probe.Query, probe.Head);
        int top = Array.IndexOf(w, w.Max());
        log.WriteLine($"seq {probe.Sequence} layer {probe.Layer} query {probe.Query} (position {probe.Position}) head {probe.Head}: top token {top}, weight {w[top]:R} (manifest {probe.TopToken}, {probe.TopWeight:R})");
        Assert.Equal(probe.TopToken, top);
        Assert.Equal(probe.TopWeight, w[top], 1e-9);
    }

    [Fact]
    public void ManifestSummary_MatchesRecomputation()
    {
        RealAttentionSet set = LoadSet();
        int seq = set.Sequences.First(s => s.Dumped).Index;
        int l = set.Layers - 1;
        const int head = 1;
        RealAttentionLayer layer = set.Layer(seq, l);
        double top95 = 0;
        double maxWeight = 0;
        for (int q = 0; q < set.DecodePositions.Count; q++)
        {
            double[] w = layer.DecodeWeights(q, head);
            Array.Sort(w);
            Array.Reverse(w);
            double cumulative = 0;
            int count = 0;
            while (count < w.Length && cumulative < 0.95)
            {
                cumulative += w[count++];
            }

            top95 += count;
            maxWeight += w[0];
        }

        top95 /= set.DecodePositions.Count;
        maxWeight /= set.DecodePositions.Count;
        RealAttentionLayerSummary s = set.Summary(seq)[l];
        log.WriteLine($"seq {seq} layer {l} head {head}: top95 {top95:F4} (manifest {s.DecodePerHeadTop95Tokens[head]:F4}), max weight {maxWeight:F6} (manifest {s.DecodePerHeadMaxWeight[head]:F6})");
        foreach (RealAttentionLayerSummary ls in set.Summary(seq))
        {
            log.WriteLine($"layer {ls.Layer}: decode top95 {ls.DecodeMeanTop95Tokens:F1} tokens, max weight {ls.DecodeMeanMaxWeight:F3}");
        }

        Assert.Equal(s.DecodePerHeadTop95Tokens[head], top95, 1e-6 * Math.Max(1, top95));
        Assert.Equal(s.DecodePerHeadMaxWeight[head], maxWeight, 1e-6 * maxWeight);
        Assert.Equal(s.DecodePerHeadTop95Tokens.Average(), s.DecodeMeanTop95Tokens, 1e-9 * s.DecodeMeanTop95Tokens);
    }
}

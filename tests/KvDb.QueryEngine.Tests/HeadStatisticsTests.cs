using KvDb.QueryEngine.Planning;

namespace KvDb.QueryEngine.Tests;

/// <summary>What AUTO remembers per (context, layer, KV head), and that a deleted context's memory goes with it.</summary>
public sealed class HeadStatisticsTests
{
    [Fact]
    public void Exact_streak_skips_the_pilot_and_retries_every_so_often()
    {
        var s = new HeadStatistics();
        Assert.False(s.ShouldAnswerExactly("c", 0, 1, 8));
        s.Record("c", 0, 1, 8, neededExact: true, sampleShare: 1, massExact: double.NaN);
        Assert.False(s.ShouldAnswerExactly("c", 0, 1, 8));
        s.Record("c", 0, 1, 8, neededExact: true, sampleShare: 1, massExact: double.NaN);
        int exact = 0;
        for (int i = 0; i < HeadStatistics.RetryEvery; i++)
        {
            exact += s.ShouldAnswerExactly("c", 0, 1, 8) ? 1 : 0;
        }

        Assert.Equal(HeadStatistics.RetryEvery - 1, exact);
        Assert.False(s.ShouldAnswerExactly("c", 0, 0, 8));
        Assert.Equal(new HeadStatisticsSnapshot(2, 2, 2, 1, 0, 0), s.Snapshot("c", 0, 1));
    }

    [Fact]
    public void Heavy_hitters_per_row_are_remembered_per_head_and_forgotten_with_the_context()
    {
        var s = new HeadStatistics();
        Assert.Equal(262, s.HeavyPerRow("c", 3, 2, 8, fallback: 262));
        s.SetHeavyPerRow("c", 3, 2, 8, 64);
        Assert.Equal(64, s.HeavyPerRow("c", 3, 2, 8, fallback: 262));
        Assert.Equal(262, s.HeavyPerRow("c", 3, 1, 8, fallback: 262));
        Assert.Equal(262, s.HeavyPerRow("d", 3, 2, 8, fallback: 262));
        Assert.Equal(64, s.Snapshot("c", 3, 2).HeavyPerRow);

        s.Forget("c");
        Assert.Equal(262, s.HeavyPerRow("c", 3, 2, 8, fallback: 262));
        Assert.Equal(0, s.Snapshot("c", 3, 2).HeavyPerRow);
    }

    [Fact]
    public void Describe_copies_each_recorded_head_of_the_contexts_layers()
    {
        var s = new HeadStatistics();
        s.Record("c", 1, 0, 2, neededExact: false, sampleShare: 0.5, massExact: 0.8);
        s.Record("c", 1, 0, 2, neededExact: false, sampleShare: 0.25, massExact: 0.6);
        s.SetHeavyPerRow("c", 1, 0, 2, 128);

        // Exact first (no mass measured), then sampled: the mass starts from the first measured one, not from 0.
        s.Record("c", 1, 1, 2, neededExact: true, sampleShare: 1, massExact: double.NaN);
        s.Record("c", 1, 1, 2, neededExact: false, sampleShare: 0.1, massExact: 0.9);
        s.Record("c", 3, 0, 2, neededExact: true, sampleShare: 1, massExact: double.NaN);
        s.Record("d", 0, 0, 2, neededExact: false, sampleShare: 0.3, massExact: 0.7);

        ContextHeadStatistics c = s.Describe("c", 2);
        Assert.Equal(("c", false), (c.Context, c.Truncated));
        LayerHeadStatistics layer = Assert.Single(c.Layers); // layer 0 has none, layer 3 is past the 2 asked for
        Assert.Equal(1, layer.Layer);
        Assert.Equal(2, layer.Heads.Count);

        HeadStatisticsSnapshot h0 = layer.Heads[0];
        Assert.Equal((2L, 0L, 0, 128, 2L), (h0.Queries, h0.ExactAnswers, h0.ExactRun, h0.HeavyPerRow, h0.MassSamples));
        Assert.Equal(0.5 + (0.2 * (0.25 - 0.5)), h0.SampleShare, 12);
        Assert.Equal(0.8 + (0.2 * (0.6 - 0.8)), h0.MassExact, 12);
        Assert.Equal(0, h0.ExactShare);

        HeadStatisticsSnapshot h1 = layer.Heads[1];
        Assert.Equal((2L, 1L, 0, 0, 1L), (h1.Queries, h1.ExactAnswers, h1.ExactRun, h1.HeavyPerRow, h1.MassSamples));
        Assert.Equal(0.5, h1.ExactShare);
        Assert.Equal(1 + (0.2 * (0.1 - 1)), h1.SampleShare, 12);
        Assert.Equal(0.9, h1.MassExact, 12);

        HeadStatisticsSnapshot exactOnly = Assert.Single(s.Describe("c", 4).Layers, l => l.Layer == 3).Heads[0];
        Assert.Equal(new HeadStatisticsSnapshot(1, 1, 1, 1, 0, 0, 0), exactOnly);
        Assert.Equal(1, exactOnly.ExactShare);

        Assert.Equal(0.7, Assert.Single(s.Describe("d", 1).Layers).Heads[0].MassExact, 12);
        Assert.Empty(s.Describe("nobody", 4).Layers);
        s.Forget("c");
        Assert.Empty(s.Describe("c", 4).Layers);
    }

    [Fact]
    public void Describe_stops_at_the_bound_and_recording_allocates_nothing()
    {
        var s = new HeadStatistics();
        const int kvHeads = 1024;
        int layers = (HeadStatistics.MaxDescribedHeads / kvHeads) + 1;
        for (int layer = 0; layer < layers; layer++)
        {
            s.Record("big", layer, 0, kvHeads, neededExact: false, sampleShare: 0.1, massExact: 0.5);
        }

        ContextHeadStatistics d = s.Describe("big", layers);
        Assert.True(d.Truncated);
        Assert.Equal(HeadStatistics.MaxDescribedHeads / kvHeads, d.Layers.Count);
        Assert.Equal(HeadStatistics.MaxDescribedHeads, d.Layers.Sum(l => l.Heads.Count));

        // The query path's calls allocate nothing once a layer's entries exist.
        QueryPath(s, kvHeads);
        long before = GC.GetAllocatedBytesForCurrentThread();
        QueryPath(s, kvHeads);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    private static void QueryPath(HeadStatistics s, int kvHeads)
    {
        for (int i = 0; i < 1000; i++)
        {
            s.Record("big", 0, i % kvHeads, kvHeads, neededExact: i % 3 == 0, sampleShare: 0.2, massExact: i % 3 == 0 ? double.NaN : 0.6);
            _ = s.ShouldAnswerExactly("big", 0, i % kvHeads, kvHeads);
            _ = s.HeavyPerRow("big", 0, i % kvHeads, kvHeads, 64);
        }
    }

    [Fact]
    public async Task Describe_while_queries_record_sees_each_head_whole()
    {
        var s = new HeadStatistics();
        const int kvHeads = 8;
        using var stop = new CancellationTokenSource();
        Task writer = Task.Run(() =>
        {
            for (int i = 0; !stop.IsCancellationRequested || i < 10_000; i++)
            {
                // Every query of a head is exact: a consistent copy has as many exact answers as queries.
                s.Record("c", i % 3, i % kvHeads, kvHeads, neededExact: true, sampleShare: 1, massExact: double.NaN);
            }
        });

        for (int k = 0; k < 200; k++)
        {
            foreach (LayerHeadStatistics l in s.Describe("c", 3).Layers)
            {
                Assert.Equal(kvHeads, l.Heads.Count);
                Assert.All(l.Heads, h => Assert.Equal(h.Queries, h.ExactAnswers));
            }
        }

        stop.Cancel();
        await writer;
        Assert.Equal(3, s.Describe("c", 3).Layers.Count);
    }
}

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
}

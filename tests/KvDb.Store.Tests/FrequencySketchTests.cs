namespace KvDb.Store.Tests;

/// <summary>The TinyLFU count-min sketch: estimates never fall below the true count (until aging), aging halves.</summary>
public sealed class FrequencySketchTests
{
    [Fact]
    public void Estimates_never_fall_below_the_true_count_and_saturate_at_15()
    {
        var sketch = new FrequencySketch(1024);
        var random = new Random(14);
        var counts = new Dictionary<ulong, int>();
        for (int i = 0; i < 5000; i++)
        {
            // Skewed: a few keys often, many rarely; stays below SampleSize, so no halving.
            ulong key = (ulong)(random.Next(20) == 0 ? random.Next(10) : random.Next(10, 3000));
            counts[key] = counts.GetValueOrDefault(key) + 1;
            sketch.Increment(key);
        }

        Assert.Equal(0, sketch.Halvings);
        int exact = 0;
        foreach ((ulong key, int count) in counts)
        {
            int estimate = sketch.Frequency(key);
            Assert.InRange(estimate, Math.Min(count, FrequencySketch.MaxCount), FrequencySketch.MaxCount);
            exact += estimate == Math.Min(count, FrequencySketch.MaxCount) ? 1 : 0;
        }

        // Collisions only add, and rarely: most estimates are exact.
        Assert.True(exact > counts.Count * 9 / 10, $"{exact} of {counts.Count} exact");
        Assert.Equal(0, sketch.Frequency(1UL << 60));
    }

    [Fact]
    public void Halving_halves_every_counter()
    {
        var sketch = new FrequencySketch(64);
        for (int i = 0; i < 12; i++)
        {
            sketch.Increment(42);
        }

        sketch.Increment(7);
        Assert.Equal((12, 1), (sketch.Frequency(42), sketch.Frequency(7)));
        sketch.Halve();
        Assert.Equal((6, 0), (sketch.Frequency(42), sketch.Frequency(7)));
        Assert.Equal(1, sketch.Halvings);
    }

    [Fact]
    public void Aging_halves_after_sample_size_increments()
    {
        var sketch = new FrequencySketch(16);
        Assert.Equal((16, 160), (sketch.Width, sketch.SampleSize));
        for (int i = 0; i < 20; i++)
        {
            sketch.Increment(42);
        }

        Assert.Equal(FrequencySketch.MaxCount, sketch.Frequency(42));
        ulong key = 1000;
        while (sketch.Halvings == 0)
        {
            sketch.Increment(key++);
        }

        // 42's counters were all saturated (collisions cannot raise them), so halving leaves exactly 7.
        Assert.Equal(7, sketch.Frequency(42));
        Assert.InRange(sketch.Additions, 0, sketch.SampleSize / 2);
    }
}

using KvDb.TestKit;

namespace KvDb.Index.Tests;

/// <summary>Block summaries answer "every key with q·k ≥ τ" exactly: nothing above the threshold is ever missed.</summary>
[Collection(WorkloadCollection.Name)]
public sealed class RangeSearchTests
{
    private readonly WorkloadFixture _fixture;

    public RangeSearchTests(WorkloadFixture fixture)
    {
        _fixture = fixture;
    }

    [Theory]
    [InlineData(0.999)]
    [InlineData(0.99)]
    [InlineData(0.9)]
    public void Block_summaries_return_every_key_at_or_above_the_threshold(double quantile)
    {
        IndexQualityHarness h = _fixture.Harness;
        int kv = h.KvHeads[0];
        int d = h.Dimension;
        var index = (IRangeSearchIndex)_fixture.Index("block", kv);
        float[] keys = h.Keys(kv);
        var positions = new long[h.Tokens];
        for (int qi = 0; qi < 4; qi++)
        {
            ReadOnlySpan<float> query = h.Queries(kv).AsSpan(qi * d, d);
            var scores = new double[h.Tokens];
            for (int t = 0; t < h.Tokens; t++)
            {
                double dot = 0;
                for (int i = 0; i < d; i++)
                {
                    dot += (double)query[i] * keys[(t * d) + i];
                }

                scores[t] = dot;
            }

            double[] sorted = [.. scores];
            Array.Sort(sorted);
            float threshold = (float)sorted[(int)(quantile * (sorted.Length - 1))];
            int written = index.AtLeast(query, threshold, positions, out int total, out SearchStats stats);
            Assert.Equal(total, written);
            var found = new HashSet<long>(positions.AsSpan(0, written).ToArray());
            int above = 0;
            for (int t = 0; t < h.Tokens; t++)
            {
                if (scores[t] >= threshold + 1e-3)
                {
                    above++;
                    Assert.Contains((long)t, found);
                }
            }

            // A superset (Quest's bounds are loose in 128 dimensions: it may be most keys), and whole blocks.
            Assert.True(above > 0);
            Assert.True(written >= above);
            Assert.Equal(2L * ((h.Tokens + 15) / 16), stats.SummariesScored);
            Assert.Equal(0, index.AtLeast(query, float.MaxValue, positions, out int none, out _));
            Assert.Equal(0, none);
        }
    }

    [Fact]
    public void A_short_span_gets_the_first_positions_and_the_full_count()
    {
        IndexQualityHarness h = _fixture.Harness;
        int kv = h.KvHeads[0];
        var index = (IRangeSearchIndex)_fixture.Index("block", kv);
        ReadOnlySpan<float> query = h.Queries(kv).AsSpan(0, h.Dimension);
        var all = new long[h.Tokens];
        int written = index.AtLeast(query, float.NegativeInfinity, all, out int total, out _);
        Assert.Equal(h.Tokens, written);
        Assert.Equal(h.Tokens, total);
        var few = new long[10];
        Assert.Equal(10, index.AtLeast(query, float.NegativeInfinity, few, out int total2, out _));
        Assert.Equal(h.Tokens, total2);
        Assert.Equal(all.AsSpan(0, 10).ToArray(), few);
    }

    [Fact]
    public void Group_range_search_is_the_union_of_the_rows_searches_with_one_pass()
    {
        IndexQualityHarness h = _fixture.Harness;
        int kv = h.KvHeads[0];
        int d = h.Dimension;
        var index = (IRangeSearchIndex)_fixture.Index("block", kv);
        const int rows = 4;
        float[] queries = h.Queries(kv).AsSpan(0, rows * d).ToArray();
        float[] keys = h.Keys(kv);
        var thresholds = new float[rows];
        var expected = new SortedSet<long>();
        var positions = new long[h.Tokens];
        for (int r = 0; r < rows; r++)
        {
            // Each row gets its own threshold (its 1st, 41st, 81st, 121st best score), so each lets through other blocks.
            var scores = new float[h.Tokens];
            for (int t = 0; t < h.Tokens; t++)
            {
                float dot = 0;
                for (int i = 0; i < d; i++)
                {
                    dot += queries[(r * d) + i] * keys[(t * d) + i];
                }

                scores[t] = dot;
            }

            Array.Sort(scores);
            thresholds[r] = scores[h.Tokens - 1 - (r * 40)];
            int found = index.AtLeast(queries.AsSpan(r * d, d), thresholds[r], positions, out _, out _);
            expected.UnionWith(positions.AsSpan(0, found).ToArray());
        }

        int n = index.AtLeastForRows(queries, rows, thresholds, positions, out int total, out SearchStats stats);
        Assert.Equal(total, n);
        Assert.Equal(expected.ToArray(), positions.AsSpan(0, n).ToArray().Order().ToArray());
        Assert.Equal(2L * ((h.Tokens + 15) / 16), stats.SummariesScored);

        var few = new long[3];
        Assert.Equal(3, index.AtLeastForRows(queries, rows, thresholds, few, out int total2, out _));
        Assert.Equal(n, total2);
    }
}

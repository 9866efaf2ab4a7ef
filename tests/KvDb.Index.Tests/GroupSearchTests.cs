using KvDb.TestKit;

namespace KvDb.Index.Tests;

/// <summary>A group search gives every row exactly what its own search gives, in one pass over the index.</summary>
[Collection(WorkloadCollection.Name)]
public sealed class GroupSearchTests
{
    private readonly WorkloadFixture _fixture;

    public GroupSearchTests(WorkloadFixture fixture)
    {
        _fixture = fixture;
    }

    [Theory]
    [InlineData(64)]
    [InlineData(327)]
    [InlineData(5000)]
    public void Block_summaries_answer_a_group_as_each_row_alone(int budget)
    {
        IndexQualityHarness h = _fixture.Harness;
        int kv = h.KvHeads[1];
        int d = h.Dimension;
        var index = (IGroupSearchIndex)_fixture.Index("block", kv);
        const int rows = 4;
        ReadOnlySpan<float> queries = h.Queries(kv).AsSpan(0, rows * d);
        var grouped = new long[rows * budget];
        var counts = new int[rows];
        index.CandidatesForRows(queries, rows, new SearchParameters(budget), grouped, counts, out SearchStats groupStats);
        long alone = 0;
        for (int r = 0; r < rows; r++)
        {
            var mine = new long[budget];
            int n = index.Candidates(queries.Slice(r * d, d), new SearchParameters(budget), mine, out SearchStats stats);
            alone += stats.SummariesScored;
            Assert.Equal(n, counts[r]);
            Assert.Equal(mine.AsSpan(0, n).ToArray(), grouped.AsSpan(r * budget, n).ToArray());
            Assert.True(n > 0);
        }

        // The group read the summaries once; row by row read them once per row.
        Assert.Equal(alone / rows, groupStats.SummariesScored);
    }
}

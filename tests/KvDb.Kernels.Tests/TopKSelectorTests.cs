using KvDb.Workload;

namespace KvDb.Kernels.Tests;

public sealed class TopKSelectorTests
{
    [Theory]
    [InlineData(1000, 10)]
    [InlineData(1000, 1000)]
    [InlineData(50, 80)]
    [InlineData(1, 1)]
    public void Select_matches_a_full_sort(int n, int k)
    {
        var rng = new DeterministicRandom((ulong)(n * 31 + k));
        var scores = new float[n];
        for (int i = 0; i < n; i++)
        {
            // Coarse values so ties happen; ties rank the lower index first.
            scores[i] = (int)(rng.NextGaussian() * 8);
        }

        var indices = new int[Math.Max(k, 1)];
        int got = TopKSelector.Select(scores, k, indices);
        int[] expected = Enumerable.Range(0, n).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k).ToArray();
        Assert.Equal(expected.Length, got);
        Assert.Equal(expected, indices[..got]);
    }

    [Fact]
    public void Select_skips_nan_and_handles_empty_input()
    {
        var indices = new int[3];
        Assert.Equal(0, TopKSelector.Select(ReadOnlySpan<float>.Empty, 3, indices));
        Assert.Equal(2, TopKSelector.Select([float.NaN, 1f, float.NaN, 2f], 3, indices));
        Assert.Equal([3, 1], indices[..2]);
    }
}

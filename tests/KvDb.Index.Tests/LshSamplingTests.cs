using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.Index.Tests;

/// <summary>
/// MagicPIG's estimator. On this workload most softmax mass sits on 4 planted needles whose cosine to the
/// query is only ≈ 0.2 (the OOD query's random part dominates its norm), so SimHash samples them with
/// p ≈ 0.1–0.4 and pure sampling is badly off (mean rel-L2 ≈ 0.85 with sinks exact). With the heavy
/// hitters attended deterministically (sinks plus the graph's top-2%, weight 1) and LSH sampling the tail
/// with weights 1/p — the split vAttention uses — the estimate is within 0.1.
/// </summary>
[Collection(WorkloadCollection.Name)]
public sealed class LshSamplingTests
{
    private readonly WorkloadFixture _fixture;
    private readonly ITestOutputHelper _output;

    public LshSamplingTests(WorkloadFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
    }

    [Fact]
    public void Inclusion_probability_follows_the_simhash_collision_law()
    {
        var lsh = new LshIndex(8, bits: 8, tables: 100, threshold: 1);
        Assert.Equal(1.0, lsh.InclusionProbability(1.0), 12);
        Assert.Equal(0.0, lsh.InclusionProbability(-1.0), 12);

        // θ = π/2: one table collides with 2^-8, at least one of 100 with 1 − (1 − 2^-8)^100.
        Assert.Equal(1 - Math.Pow(1 - Math.Pow(0.5, 8), 100), lsh.InclusionProbability(0.0), 9);
        double previous = 0;
        for (double cos = -0.9; cos < 1; cos += 0.1)
        {
            double p = lsh.InclusionProbability(cos);
            Assert.True(p >= previous);
            previous = p;
        }

        // With T = 2 the key must collide twice: 1 − P(0) − P(1) of a Binomial(L, u).
        var two = new LshIndex(8, bits: 8, tables: 100, threshold: 2);
        double u = Math.Pow(0.5, 8);
        Assert.Equal(1 - Math.Pow(1 - u, 100) - 100 * u * Math.Pow(1 - u, 99), two.InclusionProbability(0.0), 9);
    }

    [Fact]
    public void Empirical_sampling_rate_matches_the_inclusion_probability()
    {
        // Random unit keys, one query: the mean of p over keys must match the sampled fraction.
        const int n = 4000;
        const int d = 32;
        var rng = new DeterministicRandom(5);
        var keys = new float[n * d];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = (float)rng.NextGaussian();
        }

        var query = new float[d];
        keys.AsSpan(0, d).CopyTo(query);
        var lsh = new LshIndex(d, bits: 6, tables: 40, threshold: 2);
        lsh.Build(keys, Enumerable.Range(0, n).Select(i => (long)i).ToArray());
        var rows = new int[n];
        int sampled = lsh.Sample(query, rows, out _);
        var metricQuery = new float[d];
        (double dotMean, double norm) = lsh.PrepareQuery(query, metricQuery);
        double expected = 0;
        for (int i = 0; i < n; i++)
        {
            double dot = 0;
            for (int j = 0; j < d; j++)
            {
                dot += metricQuery[j] * keys[i * d + j];
            }

            expected += lsh.InclusionProbability(lsh.CenteredCosine(i, dot, dotMean, norm));
        }

        _output.WriteLine($"sampled {sampled}, expected {expected:F1}");
        Assert.InRange(sampled, expected * 0.8 - 20, expected * 1.2 + 20);
    }

    [Fact]
    public void Estimate_with_every_row_exact_is_exact_attention()
    {
        IndexQualityHarness h = _fixture.Harness;
        int kv = h.KvHeads[0];
        int d = h.Dimension;
        var lsh = (LshIndex)_fixture.Index("lsh:Q=0", kv);
        var estimator = new LshSamplingEstimator(lsh);
        int[] all = Enumerable.Range(0, h.Tokens).ToArray();
        var output = new float[d];
        estimator.Estimate(h.Queries(kv).AsSpan(0, d), h.Scale, h.Keys(kv), h.Values(kv), all, output, out float lse);
        (double[] expected, double expectedLse) = h.Exact(kv, 0);
        Assert.True(ReferenceAttention.RelativeL2(output, expected) < 1e-4);
        Assert.Equal(expectedLse, lse, 3);
    }

    [Fact]
    public void Sampled_estimate_is_within_ten_percent_at_under_five_percent_of_tokens()
    {
        IndexQualityHarness h = _fixture.Harness;
        int d = h.Dimension;
        int heavy = 2 * h.TopK;
        double errorSum = 0;
        double lseErrorSum = 0;
        double attendedSum = 0;
        double pureErrorSum = 0;
        int count = 0;
        foreach (int kv in h.KvHeads)
        {
            Assert.False(h.Workload.IsDiffuseHead(kv));
            var estimator = new LshSamplingEstimator((LshIndex)_fixture.Index("lsh:Q=0", kv));
            IKeyIndex graph = _fixture.Index("graph", kv);
            float[] queries = h.Queries(kv);
            var found = new long[heavy];
            var output = new float[d];
            for (int q = 0; q < queries.Length / d; q++)
            {
                ReadOnlySpan<float> query = queries.AsSpan(q * d, d);
                int got = graph.Candidates(query, new SearchParameters(heavy, 3 * heavy), found, out _);
                var exact = new SortedSet<int> { 0, 1, 2, 3 };
                for (int i = 0; i < got; i++)
                {
                    exact.Add((int)found[i]);
                }

                int attended = estimator.Estimate(query, h.Scale, h.Keys(kv), h.Values(kv), exact.ToArray(), output, out float lse);
                (double[] expected, double expectedLse) = h.Exact(kv, q);
                errorSum += ReferenceAttention.RelativeL2(output, expected);
                lseErrorSum += Math.Abs(lse - expectedLse);
                attendedSum += (double)attended / h.Tokens;

                estimator.Estimate(query, h.Scale, h.Keys(kv), h.Values(kv), [0, 1, 2, 3], output, out _);
                pureErrorSum += ReferenceAttention.RelativeL2(output, expected);
                count++;
            }
        }

        double error = errorSum / count;
        double attendedFraction = attendedSum / count;
        _output.WriteLine($"heavy hitters + LSH tail: mean rel-L2 {error:F4}, mean |Δlse| {lseErrorSum / count:F4}, tokens {attendedFraction:P2}; sinks + LSH only: mean rel-L2 {pureErrorSum / count:F4}");
        Assert.True(attendedFraction <= 0.05, $"attended {attendedFraction:P2} of tokens");
        Assert.True(error <= 0.1, $"mean relative L2 error {error:F4}");
        Assert.True(lseErrorSum / count <= 0.1, $"mean LSE error {lseErrorSum / count:F4}");
    }
}

using KvDb.Index.Catalog;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Planning;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;
using Xunit.Abstractions;

namespace KvDb.QueryEngine.Tests;

/// <summary>
/// AUTO's plan (heavy hitters exact + a verified uniform sample) against the f64 reference over all tokens, on
/// workloads whose heads range from needle-peaked to Zipf topics to near-uniform.
/// </summary>
public sealed class VerifiedSamplingPlanTests : IDisposable
{
    private const int Tokens = 8192;
    private const int QueryHeads = 16;
    private const int KvHeads = 4;
    private const int Dim = 128;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 512L << 20 });
    private readonly ITestOutputHelper _output;

    public VerifiedSamplingPlanTests(ITestOutputHelper output)
    {
        _output = output;
        _store.CreateModel(new ModelSchema("m", 1, QueryHeads, KvHeads, Dim, KvDType.BF16, 64, 0));
    }

    /// <summary>Workloads, and a temperature the queries are multiplied by (below 1 flattens every head's attention).</summary>
    public static TheoryData<string, double> Workloads => new()
    {
        { "peaked", 1.0 },
        { "peaked", 0.35 },
        { "peaked", 0.2 },
        { "topical", 1.0 },
        { "topical", 0.5 },
        { "diffuse", 1.0 },
    };

    public void Dispose() => _store.Dispose();

    [Fact]
    public void Answer_equals_attention_over_the_weighted_set_it_reports()
    {
        (string context, SyntheticWorkload workload) = Load("topical");
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        using LayerIndexes indexes = LayerIndexes.Build(layer, QueryPlanner.AutoHeavySpec, workload.Queries(64, 99));
        var plan = new VerifiedSamplingPlan(indexes, QualityContract.Default, CostModel.Default, seed: 1);
        const int q = 2;
        float[] queries = workload.Queries(q, 5);
        var query = new AttentionQuery(context, 0, queries, q, 100, 300, PlanRequest.Auto, false);
        var reference = new StoredLayerReference(layer);
        int computed = 0;
        for (int kv = 0; kv < KvHeads; kv++)
        {
            HeadSelection h = plan.Select(layer, query, kv);
            if (h.Partial is not GroupPartial partial)
            {
                continue;
            }

            computed++;
            Assert.All(h.Positions, p => Assert.False(p is >= 100 and < 300));
            Assert.All(h.Sampled, p => Assert.False(p is >= 100 and < 300));
            Assert.Empty(h.Positions.Intersect(h.Sampled));
            Assert.Contains(0L, h.Positions); // sinks
            for (int r = 0; r < q * (QueryHeads / KvHeads); r++)
            {
                ReadOnlySpan<float> row = layer.Model.Geometry.GroupRow(queries, kv, r);
                (double[] o, double lse) = WeightedReference(reference, kv, row, h.Positions, h.Sampled, h.SampleLogWeight);
                Assert.True(VectorErrors.RelativeL2(partial.Output.AsSpan(r * Dim, Dim), o.Select(x => (float)x).ToArray()) < 1e-4);
                Assert.Equal(lse, partial.Lse[r], 3);
            }
        }

        Assert.True(computed > 0, "no head was sampled: the test checks nothing");
    }

    [Theory]
    [MemberData(nameof(Workloads))]
    public void Violation_rate_is_at_most_delta(string workloadName, double temperature)
    {
        (string context, SyntheticWorkload workload) = Load(workloadName);
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        using LayerIndexes indexes = LayerIndexes.Build(layer, QueryPlanner.AutoHeavySpec, workload.Queries(64, 99));
        var contract = new QualityContract(0.05, 0.05);

        // With head statistics, as the server runs it: the heavy set per head is tuned from query to query.
        var plan = new VerifiedSamplingPlan(indexes, contract, CostModel.Default, new HeadStatistics(), context, seed: 7);
        var reference = new StoredLayerReference(layer);
        int pairs = 0;
        int violations = 0;
        int sampled = 0;
        double attended = 0;
        double worst = 0;
        double sumError = 0;
        double minMass = 1;
        for (int trial = 0; trial < 24; trial++)
        {
            float[] queries = workload.Queries(1, 1000 + (ulong)trial);
            for (int i = 0; i < queries.Length; i++)
            {
                queries[i] *= (float)temperature;
            }

            (HeadSelection[] heads, double[] errors) = AnswerAuto(layer, plan, reference, context, queries);
            foreach (double error in errors)
            {
                worst = Math.Max(worst, error);
                sumError += error;
                pairs++;
                violations += error > contract.Epsilon ? 1 : 0;
            }

            foreach (HeadSelection s in heads)
            {
                sampled += s.Partial is null ? 0 : 1;
                foreach (HeadQuality hq in s.Partial?.Quality ?? [])
                {
                    minMass = Math.Min(minMass, hq.MassExact);
                }

                attended += s.IsDense ? 1 : (double)(s.Positions.Length + s.Sampled.Length) / Tokens;
            }
        }

        double rate = (double)violations / pairs;
        _output.WriteLine($"{workloadName} ×{temperature}: {violations}/{pairs} violations ({rate:P1}), mean rel-L2 {sumError / pairs:F5}, worst {worst:F4}, lowest heavy mass {minMass:F3}, sampled heads {sampled}/{24 * KvHeads}, attended {attended / (24 * KvHeads):P1}");
        Assert.True(rate <= contract.Delta + 0.02, $"violation rate {rate:P1}");
        if (workloadName != "diffuse" && temperature == 1.0)
        {
            Assert.True(sampled >= 24 * KvHeads / 2, $"only {sampled} heads sampled: AUTO saved nothing");
        }
    }

    /// <summary>
    /// Random keys and zero-mean random values: attention is near uniform and the true output is near zero, so a pilot's
    /// estimate of the output is mostly its own noise. Sized against that estimate, the sample would be far too small;
    /// the plan must bound the output norm from below and answer exactly when it cannot (the violation rate stays ≤ δ).
    /// </summary>
    [Theory]
    [InlineData(0.05)]
    [InlineData(0.2)]
    public void Near_zero_outputs_are_answered_within_epsilon(double epsilon)
    {
        var random = new Random(17);
        int rowFloats = KvHeads * Dim;
        const int tokens = 32768;
        var keys = new float[tokens * rowFloats];
        var values = new float[tokens * rowFloats];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = Gaussian(random);
            values[i] = Gaussian(random);
        }

        string context = _store.CreateContext("m", "zero-mean", null, ReadOnlySpan<int>.Empty).Id;
        using (IAppendTransaction tx = _store.BeginAppend(context))
        {
            tx.Append(0, new int[tokens], ElementConversion.FromSingle(KvDType.BF16, keys), ElementConversion.FromSingle(KvDType.BF16, values));
            tx.Commit();
        }

        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        var sampleQueries = new float[64 * Dim];
        for (int i = 0; i < sampleQueries.Length; i++)
        {
            sampleQueries[i] = Gaussian(random);
        }

        using LayerIndexes indexes = LayerIndexes.Build(layer, QueryPlanner.AutoHeavySpec, sampleQueries);
        var contract = new QualityContract(epsilon, 0.05);
        var plan = new VerifiedSamplingPlan(indexes, contract, CostModel.Default, new HeadStatistics(), context, seed: 3);
        var reference = new StoredLayerReference(layer);
        int pairs = 0, violations = 0;
        double worst = 0;
        for (int trial = 0; trial < 12; trial++)
        {
            var queries = new float[QueryHeads * Dim];
            for (int i = 0; i < queries.Length; i++)
            {
                queries[i] = Gaussian(random);
            }

            foreach (double error in AnswerAuto(layer, plan, reference, context, queries).Errors)
            {
                worst = Math.Max(worst, error);
                violations += error > epsilon ? 1 : 0;
                pairs++;
            }
        }

        _output.WriteLine($"epsilon {epsilon}: {violations}/{pairs} violations, worst rel-L2 {worst:F4}");
        Assert.True((double)violations / pairs <= 0.05 + 0.02, $"{violations}/{pairs} violations, worst {worst:F3}");
    }

    /// <summary>One AUTO answer of a query token through the plan and the attend phase, and each query head's rel-L2 against f64 over every token.</summary>
    private static (HeadSelection[] Heads, double[] Errors) AnswerAuto(LayerSnapshot layer, VerifiedSamplingPlan plan, StoredLayerReference reference, string context, float[] queries)
    {
        var query = new AttentionQuery(context, 0, queries, 1, 0, 0, PlanRequest.Auto, false);
        HeadSelection[] heads = plan.SelectAll(layer, query);
        var output = new float[queries.Length];
        var lse = new float[QueryHeads];
        SelectionAttention.Run(layer, query, heads, null, output, lse, out _);
        (double[] exact, _) = reference.Attend(queries, 1);
        var errors = new double[QueryHeads];
        for (int h = 0; h < QueryHeads; h++)
        {
            errors[h] = ReferenceAttention.RelativeL2(output.AsSpan(h * Dim, Dim), exact.AsSpan(h * Dim, Dim));
        }

        return (heads, errors);
    }

    private static float Gaussian(Random random) => (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));

    [Fact]
    public void Estimate_of_the_softmax_denominator_is_unbiased()
    {
        (string context, SyntheticWorkload workload) = Load("diffuse");
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        using LayerIndexes indexes = LayerIndexes.Build(layer, QueryPlanner.AutoHeavySpec, workload.Queries(64, 99));

        // A loose contract keeps the sample small, so each estimate is noisy and a bias would show.
        var plan = new VerifiedSamplingPlan(indexes, new QualityContract(0.5, 0.5), new CostModel(1e9, 1e9, 1), seed: 3);
        float[] queries = workload.Queries(1, 77);
        var query = new AttentionQuery(context, 0, queries, 1, 0, 0, PlanRequest.Auto, false);
        (_, double[] exactLse) = new StoredLayerReference(layer).Attend(queries, 1);
        const int trials = 300;
        var ratios = new double[trials];
        long sampledTotal = 0;
        for (int t = 0; t < trials; t++)
        {
            HeadSelection h = plan.Select(layer, query, 0);
            GroupPartial partial = Assert.IsType<GroupPartial>(h.Partial);
            sampledTotal += h.Sampled.Length;
            ratios[t] = Math.Exp(partial.Lse[0] - exactLse[0]);
        }

        double mean = ratios.Average();
        double sd = Math.Sqrt(ratios.Select(r => (r - mean) * (r - mean)).Sum() / (trials - 1));
        _output.WriteLine($"E[D̂/D] = {mean:F4} ± {sd / Math.Sqrt(trials):F4} (sd {sd:F4}), mean sample {sampledTotal / trials}");
        Assert.True(sd > 0, "the estimate never varied: nothing was sampled");
        Assert.True(Math.Abs(mean - 1) <= 4 * sd / Math.Sqrt(trials) + 1e-3, $"mean ratio {mean:F4}");
    }

    [Fact]
    public void Sampler_maps_ranks_to_the_residual_and_draws_it_uniformly()
    {
        long[] heavy = [0, 1, 2, 3, 10, 11, 40, 41, 42, 99];
        var exclude = new ExcludeRange(50, 70);
        var sampler = new ResidualSampler(100, exclude, heavy, new Random(5));
        long[] residual = Enumerable.Range(0, 100).Select(i => (long)i).Where(p => !exclude.Contains(p) && Array.IndexOf(heavy, p) < 0).ToArray();
        Assert.Equal(residual.Length, sampler.Count);
        for (int rank = 0; rank < residual.Length; rank++)
        {
            Assert.Equal(residual[rank], sampler.PositionOf(rank));
        }

        var counts = new int[100];
        for (int trial = 0; trial < 2000; trial++)
        {
            var s = new ResidualSampler(100, exclude, heavy, new Random(trial));
            var drawn = new long[7];
            s.Draw(drawn);
            Assert.Equal(7, drawn.Distinct().Count());
            foreach (long p in drawn)
            {
                counts[p]++;
            }
        }

        double expected = 2000.0 * 7 / residual.Length;
        foreach (long p in residual)
        {
            Assert.InRange(counts[p], expected * 0.7, expected * 1.3);
        }

        Assert.All(heavy, p => Assert.Equal(0, counts[p]));
        Assert.Equal(0, counts.Skip(50).Take(20).Sum());
    }

    [Fact]
    public void Required_sample_meets_the_bound_it_predicts()
    {
        double factor = VerifiedSamplingPlan.ConcentrationFactor(0.05);
        Assert.Equal(Math.Pow(1 + Math.Sqrt(2 * Math.Log(20)), 2), factor, 12);
        double n = VerifiedSamplingPlan.RequiredSample(100_000, 0.3, 2.0, 1.5, 0.05, factor);
        Assert.InRange(n, 1, 100_000);
        Assert.Equal(0.05, VerifiedSamplingPlan.PredictedError(100_000, n, 0.3, 2.0, 1.5, factor), 6);
        Assert.Equal(100_000, VerifiedSamplingPlan.RequiredSample(100_000, 0.3, 0, 1.5, 0.05, factor));
        Assert.Equal(0, VerifiedSamplingPlan.PredictedError(1000, 1000, 0.3, 2.0, 1.5, factor));
    }

    [Fact]
    public void A_head_that_needed_exact_attention_twice_is_answered_exactly_without_a_pilot()
    {
        (string context, SyntheticWorkload workload) = Load("diffuse");
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        using LayerIndexes indexes = LayerIndexes.Build(layer, QueryPlanner.AutoHeavySpec, workload.Queries(64, 99));
        var statistics = new HeadStatistics();
        var plan = new VerifiedSamplingPlan(indexes, new QualityContract(0.01, 0.01), CostModel.Default, statistics, context, seed: 9);
        var choices = new List<HeadChoice>();
        for (int i = 0; i < 4; i++)
        {
            // A request's budget fixes the heavy set, so the head cannot escape exact attention by naming more.
            var query = new AttentionQuery(context, 0, workload.Queries(1, 500 + (ulong)i), 1, 0, 0, PlanRequest.Auto with { Budget = 64 }, false);
            choices.Add(plan.Select(layer, query, 0).Choice);
        }

        _output.WriteLine(string.Join(", ", choices));
        Assert.Equal([HeadChoice.DiffuseAfterPilot, HeadChoice.DiffuseAfterPilot, HeadChoice.ExactBefore, HeadChoice.ExactBefore], choices);
        Assert.Equal(2, statistics.Snapshot(context, 0, 0).ExactAnswers);
    }

    [Fact]
    public void A_diffuse_head_names_more_heavy_hitters_before_it_settles_on_exact_attention()
    {
        (string context, SyntheticWorkload workload) = Load("diffuse");
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        using LayerIndexes indexes = LayerIndexes.Build(layer, QueryPlanner.AutoHeavySpec, workload.Queries(64, 99));
        var statistics = new HeadStatistics();
        var plan = new VerifiedSamplingPlan(indexes, new QualityContract(0.01, 0.01), CostModel.Default, statistics, context, seed: 9);
        var choices = new List<HeadChoice>();
        var perRow = new List<int>();
        for (int i = 0; i < 6; i++)
        {
            var query = new AttentionQuery(context, 0, workload.Queries(1, 500 + (ulong)i), 1, 0, 0, PlanRequest.Auto, false);
            choices.Add(plan.Select(layer, query, 0).Choice);
            perRow.Add(statistics.Snapshot(context, 0, 0).HeavyPerRow);
        }

        _output.WriteLine(string.Join(", ", choices) + " / heavy per row " + string.Join(", ", perRow));
        int first = VerifiedSamplingPlan.HeavyPerRow(Tokens);
        Assert.Equal(HeadChoice.DiffuseAfterPilot, choices[0]);
        Assert.Equal(first * 4, perRow[0]);
        Assert.Equal(Math.Min(VerifiedSamplingPlan.MaxHeavyPerRow, first * 16), perRow[1]);

        // Once the heavy set is as large as it gets, the head is exact: cheaper outright, or after two diffuse pilots.
        Assert.All(choices.Skip(2), c => Assert.Contains(c, new[] { HeadChoice.ExactCheaper, HeadChoice.DiffuseAfterPilot, HeadChoice.ExactBefore }));
        Assert.DoesNotContain(HeadChoice.Sampled, choices);
    }

    [Fact]
    public async Task Auto_answers_exactly_until_the_index_is_ready_and_never_waits()
    {
        (string context, SyntheticWorkload workload) = Load("peaked");
        using var executor = new AttentionExecutor(_store, costs: CostModel.Default);
        float[] queries = workload.Queries(1, 11);
        var query = new AttentionQuery(context, 0, queries, 1, 0, 0, PlanRequest.Auto, false);
        (double[] exact, _) = Reference(context).Attend(queries, 1);

        AttentionResult first = executor.Attend(query);
        Assert.Equal(PlanDecision.IndexNotReady, first.Stats.Explain.Decision);
        Assert.Equal("exact", first.Stats.Plan);
        Assert.True(ReferenceAttention.RelativeL2(first.Output, exact) < 1e-3);
        Assert.All(first.Stats.Quality!, h => Assert.Equal(1.0, h.MassExact));

        await executor.Indexes.WhenIdle(context, 0, QueryPlanner.AutoHeavySpec);
        AttentionResult second = executor.Attend(query);
        Assert.Equal(PlanDecision.AutoSampled, second.Stats.Explain.Decision);
        Assert.Equal(QualityContract.Default, second.Stats.Contract);
        Assert.Equal(QueryHeads, second.Stats.Quality!.Count);
        Assert.Contains(second.Stats.Quality!, h => h.Plan == "sampled" && h.TokensSampled > 0 && h.MassExact is > 0 and <= 1 && h.ErrorBound == 0.05);
        Assert.True(second.Stats.TokensAttended < Tokens * KvHeads / 4, $"attended {second.Stats.TokensAttended}");
        for (int h = 0; h < QueryHeads; h++)
        {
            Assert.True(ReferenceAttention.RelativeL2(second.Output.AsSpan(h * Dim, Dim), exact.AsSpan(h * Dim, Dim)) <= 0.05 * 3);
        }
    }

    private StoredLayerReference Reference(string context)
    {
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        return new StoredLayerReference(layer);
    }

    private (string Context, SyntheticWorkload Workload) Load(string name)
    {
        var options = new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = Dim };
        options = name switch
        {
            "topical" => options with { TopicalHeadFraction = 0.5, DiffuseHeadFraction = 0 },
            "diffuse" => options with { DiffuseHeadFraction = 1.0 },
            _ => options with { DiffuseHeadFraction = 0 },
        };
        var workload = new SyntheticWorkload(options);
        string context = _store.CreateContext("m", name, null, ReadOnlySpan<int>.Empty).Id;
        _store.AppendWorkload(context, workload, KvDType.BF16, 0, Tokens);
        return (context, workload);
    }

    /// <summary>f64 attention of one query row over KV head <paramref name="kv"/>'s <paramref name="exact"/> rows (weight 1) and <paramref name="sampled"/> rows (weight e^logWeight).</summary>
    private static (double[] Output, double Lse) WeightedReference(StoredLayerReference reference, int kv, ReadOnlySpan<float> q, long[] exact, long[] sampled, float logWeight)
    {
        var scores = new List<(double Score, long Position)>();
        foreach ((long[] set, double shift) in new[] { (exact, 0.0), (sampled, (double)logWeight) })
        {
            foreach (long p in set)
            {
                ReadOnlySpan<float> k = reference.Keys.Slice((int)(((p * KvHeads) + kv) * Dim), Dim);
                double dot = 0;
                for (int j = 0; j < Dim; j++)
                {
                    dot += (double)q[j] * k[j];
                }

                scores.Add((reference.Scale * dot + shift, p));
            }
        }

        double max = scores.Max(s => s.Score);
        double sum = 0;
        var o = new double[Dim];
        foreach ((double s, long p) in scores)
        {
            double w = Math.Exp(s - max);
            sum += w;
            ReadOnlySpan<float> v = reference.Values.Slice((int)(((p * KvHeads) + kv) * Dim), Dim);
            for (int j = 0; j < Dim; j++)
            {
                o[j] += w * v[j];
            }
        }

        for (int j = 0; j < Dim; j++)
        {
            o[j] /= sum;
        }

        return (o, max + Math.Log(sum));
    }
}

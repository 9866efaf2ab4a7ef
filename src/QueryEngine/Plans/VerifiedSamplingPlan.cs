using System.Buffers;
using System.Diagnostics;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine.Explain;
using KvDb.QueryEngine.Planning;
using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// AUTO's plan, after vAttention (arXiv 2510.05688): per KV head, the heavy hitters — sinks, the unindexed tail and
/// what a <see cref="IHeavyHitterIndex"/> names for the group's query rows — are attended exactly, and the rest of
/// the layer (the residual) is estimated from a uniform random sample, scaled by residual/sample. The sample's size
/// comes from a pilot: the pilot estimates, per query row, the variance of the residual's contribution to the
/// output, and the size is the smallest for which a Gaussian concentration bound puts the output's relative L2 error
/// within ε with probability 1 − δ (docs/query-engine.md gives the estimator and its assumptions). One sample serves
/// the whole GQA group (the largest size any row needs). When that sample would cost more than exact attention the
/// head is answered exactly: a diffuse head is never starved. The plan computes the answer while it selects (it needs
/// the heavy part's output to size the sample) and hands it over in <see cref="HeadSelection.Partial"/>.
/// </summary>
public sealed class VerifiedSamplingPlan : IAttentionPlan
{
    /// <summary>Residual tokens the pilot samples per KV head (fewer when the residual is smaller).</summary>
    public const int PilotSize = 256;

    /// <summary>Heavy hitters per query row: this share of the indexed tokens, within [<see cref="MinHeavyPerRow"/>, <see cref="MaxHeavyPerRow"/>].</summary>
    public const double HeavyFraction = 0.002;

    /// <summary>Fewest heavy hitters named per query row.</summary>
    public const int MinHeavyPerRow = 64;

    /// <summary>Most heavy hitters named per query row by default (a request's budget may ask for more).</summary>
    public const int MaxHeavyPerRow = 1024;

    /// <summary>Fewest heavy hitters per query row a head's statistics may settle on (a peaked head's mass is in its outliers).</summary>
    public const int MinTunedHeavyPerRow = 16;

    private readonly LayerIndexes _heavy;
    private readonly QualityContract _contract;
    private readonly CostModel _costs;
    private readonly HeadStatistics? _statistics;
    private readonly string _context;
    private readonly int? _seed;
    private int _calls;

    /// <summary>
    /// Creates the plan over heavy-hitter indexes of the layer it will run on, for <paramref name="contract"/>; the
    /// optimizer's <paramref name="costs"/> decide exact vs sampled per head, <paramref name="statistics"/> (optional)
    /// remember per (<paramref name="context"/>, layer, KV head) how it went. <paramref name="seed"/> fixes the
    /// random samples (tests); null draws fresh ones.
    /// </summary>
    public VerifiedSamplingPlan(LayerIndexes heavy, QualityContract contract, CostModel costs, HeadStatistics? statistics = null, string context = "", int? seed = null)
    {
        foreach (IndexSegment segment in heavy.Segments)
        {
            for (int kv = 0; kv < segment.KvHeads; kv++)
            {
                if (segment[kv] is not IHeavyHitterIndex)
                {
                    throw new ArgumentException($"AUTO needs heavy-hitter indexes, got \"{heavy.Spec}\"", nameof(heavy));
                }
            }
        }

        _heavy = heavy;
        _contract = contract.Validated();
        _costs = costs;
        _statistics = statistics;
        _context = context;
        _seed = seed;
    }

    /// <inheritdoc />
    public string Name => $"auto:{_heavy.Spec}";

    /// <summary>The contract the plan answers under.</summary>
    public QualityContract Contract => _contract;

    /// <summary>
    /// (1 + √(2 ln(1/δ)))²: the Gaussian-concentration factor by which the expected squared error is multiplied so that
    /// the error exceeds its bound with probability at most δ (the norm of a Gaussian vector is Lipschitz in its
    /// standardized coordinates, with constant at most the root of the covariance's trace).
    /// </summary>
    public static double ConcentrationFactor(double delta)
    {
        double t = 1 + Math.Sqrt(2 * Math.Log(1 / delta));
        return t * t;
    }

    /// <summary>Heavy hitters named per query row over <paramref name="indexedTokens"/> indexed tokens.</summary>
    public static int HeavyPerRow(long indexedTokens) =>
        (int)Math.Clamp((long)Math.Ceiling(indexedTokens * HeavyFraction), MinHeavyPerRow, MaxHeavyPerRow);

    /// <summary>
    /// Sample size that puts one row's error within <paramref name="epsilon"/> with probability 1 − δ: the smallest n
    /// with c·R²·σ²·(1/n − 1/R) ≤ ε²·‖o‖²·D² (sampling without replacement from R residual tokens), where σ² is the
    /// variance of a residual token's contribution wᵢ(vᵢ − o) to the output's numerator, D the softmax denominator
    /// and c the <see cref="ConcentrationFactor"/>; R when ‖o‖ is zero (no relative bound is possible).
    /// </summary>
    public static double RequiredSample(double residual, double variance, double outputNorm2, double denominator, double epsilon, double factor)
    {
        if (residual <= 0 || variance <= 0)
        {
            return 0;
        }

        if (!(outputNorm2 > 0) || !(denominator > 0))
        {
            return residual;
        }

        double a = factor * residual * residual * variance / (epsilon * epsilon * outputNorm2 * denominator * denominator);
        return double.IsFinite(a) ? a * residual / (a + residual) : residual;
    }

    /// <summary>The (1 − δ)-quantile of one row's relative error with a sample of <paramref name="sample"/> of <paramref name="residual"/> tokens.</summary>
    public static double PredictedError(double residual, double sample, double variance, double outputNorm2, double denominator, double factor)
    {
        if (residual <= 0 || sample >= residual)
        {
            return 0;
        }

        if (!(outputNorm2 > 0) || !(denominator > 0) || sample <= 0)
        {
            return double.PositiveInfinity;
        }

        double squared = factor * residual * residual * variance * ((1 / sample) - (1 / residual));
        return Math.Sqrt(Math.Max(0, squared)) / (denominator * Math.Sqrt(outputNorm2));
    }

    /// <inheritdoc />
    public PlanEstimate Estimate(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        AttentionGeometry g = layer.Model.Geometry;
        long groupRows = (long)query.NumQueries * g.GroupSize;
        long live = layer.Tokens - query.Exclude.CountWithin(layer.Tokens);
        long heavy = Math.Min(_heavy.IndexedTokens, groupRows * HeavyPerRowFor(layer, query, kvHead));
        long rows = Math.Min(live, AttentionSinks.End(layer.Tokens) + (layer.Tokens - _heavy.IndexedTokens) + heavy + PilotSize);
        return new PlanEstimate(rows, rows * 2L * g.RowBytes);
    }

    /// <inheritdoc />
    public HeadSelection Select(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        long started = Stopwatch.GetTimestamp();
        AttentionGeometry g = layer.Model.Geometry;
        int rowBytes = g.RowBytes;
        long live = layer.Tokens - query.Exclude.CountWithin(layer.Tokens);
        if (_statistics?.ShouldAnswerExactly(_context, layer.Layer, kvHead, g.NumKvHeads) == true)
        {
            return HeadSelection.DenseBecause(HeadChoice.ExactBefore);
        }

        if (_costs.StreamMicros(live, rowBytes) <= _costs.GatherMicros(Estimate(layer, query, kvHead).Rows, rowBytes))
        {
            return HeadSelection.DenseBecause(HeadChoice.ExactCheaper);
        }

        int perRow = HeavyPerRowFor(layer, query, kvHead);
        long[] heavy = HeavyPositions(layer, query, kvHead, perRow, out long summaries);
        Random random = _seed is int seed ? new Random(HashCode.Combine(seed, kvHead, Interlocked.Increment(ref _calls))) : new Random();
        var sampler = new ResidualSampler(layer.Tokens, query.Exclude, heavy, random);
        var work = new SampledHead(g, query, kvHead);
        try
        {
            AttentionCounters counters = work.Attend(layer, heavy, scoreShift: 0);
            counters += new AttentionCounters(0, 0, summaries * g.HeadDim * sizeof(float));
            work.KeepHeavy();
            long residual = sampler.Count;
            double factor = ConcentrationFactor(_contract.Delta);
            if (residual == 0)
            {
                return work.Finish(heavy, [], 0, residual, factor, _contract.Epsilon, counters, HeadChoice.HeavyOnly, Record(layer, kvHead, work, 0));
            }

            int pilotCount = (int)Math.Min(residual, PilotSize);
            long[] pilot = new long[pilotCount];
            sampler.Draw(pilot);
            Array.Sort(pilot);
            counters += work.MeasurePilot(layer, pilot, residual);
            work.LowerOutputNorms(residual, pilotCount, factor);

            double needed = pilotCount;
            for (int r = 0; r < work.Rows; r++)
            {
                needed = Math.Max(needed, Math.Ceiling(RequiredSample(residual, work.Variance[r], work.OutputNorm2[r], work.Denominator[r], _contract.Epsilon, factor)));
            }

            long sampleSize = (long)Math.Min(residual, needed);
            long extra = sampleSize - pilotCount;
            HeadChoice choice = HeadChoice.Sampled;
            long contractRows = heavy.Length + sampleSize;
            if (extra > 0 && _costs.GatherMicros(extra, rowBytes) >= _costs.StreamMicros(live, rowBytes))
            {
                // Attention spread over a topic is diffuse only to a small heavy set: name more heavy hitters next time,
                // and count the head as needing exact attention only once its heavy set cannot grow.
                bool canGrow = _statistics is not null && query.Plan.Budget <= 0 && perRow < MaxHeavyPerRow;
                if (canGrow)
                {
                    _statistics!.SetHeavyPerRow(_context, layer.Layer, kvHead, g.NumKvHeads, Math.Min(MaxHeavyPerRow, perRow * 4));
                }

                _statistics?.Record(_context, layer.Layer, kvHead, g.NumKvHeads, neededExact: !canGrow, sampleShare: (double)sampleSize / residual, massExact: double.NaN);
                return HeadSelection.DenseBecause(HeadChoice.DiffuseAfterPilot, (long)pilotCount * work.Rows, counters.BytesRead, contractRows);
            }

            if (extra > 0 && _contract.MaxLatencyMicros > 0)
            {
                double headBudget = (double)_contract.MaxLatencyMicros * Math.Min(_costs.Parallelism, g.NumKvHeads) / g.NumKvHeads;
                double left = headBudget - Stopwatch.GetElapsedTime(started).TotalMicroseconds;
                long affordable = Math.Max(0, (long)(left * _costs.GatherBytesPerMicro / (2.0 * rowBytes)));
                if (affordable < extra)
                {
                    extra = affordable;
                    sampleSize = pilotCount + extra;
                    choice = HeadChoice.LatencyCapped;
                }
            }

            long[] sample = pilot;
            long[] more = [];
            if (extra > 0)
            {
                more = new long[extra];
                sampler.Draw(more);
                Array.Sort(more);
                sample = new long[sampleSize];
                pilot.CopyTo(sample, 0);
                more.CopyTo(sample, pilotCount);
                Array.Sort(sample);
            }

            TuneHeavy(layer, query, kvHead, perRow, heavy.Length, sampleSize, pilotCount);
            float logWeight = (float)Math.Log((double)residual / sampleSize);
            counters += work.AttendSample(layer, more, logWeight);
            HeadSelection answered = work.Finish(heavy, sample, logWeight, residual, factor, _contract.Epsilon, counters, choice, Record(layer, kvHead, work, (double)sampleSize / residual));
            return choice == HeadChoice.LatencyCapped ? answered.WithContractRows(contractRows) : answered;
        }
        finally
        {
            work.Dispose();
        }
    }

    private Action<double> Record(LayerSnapshot layer, int kvHead, SampledHead work, double sampleShare) =>
        mass => _statistics?.Record(_context, layer.Layer, kvHead, layer.Model.NumKvHeads, neededExact: false, sampleShare, mass);

    private long HeavyPerRowFor(AttentionQuery query) =>
        query.Plan.Budget > 0 ? Math.Min(int.MaxValue / 4, query.Plan.Budget) : HeavyPerRow(_heavy.IndexedTokens);

    /// <summary>Heavy hitters per row for this head: the request's budget, else what the head's statistics learned, else the default share.</summary>
    private int HeavyPerRowFor(LayerSnapshot layer, AttentionQuery query, int kvHead)
    {
        int fallback = (int)HeavyPerRowFor(query);
        return query.Plan.Budget > 0 || _statistics is null
            ? fallback
            : _statistics.HeavyPerRow(_context, layer.Layer, kvHead, layer.Model.NumKvHeads, fallback);
    }

    /// <summary>
    /// Balances the head's two reads for its next query: heavy hitters and sample rows cost the same per row, so when the
    /// sample outgrew the heavy set the head names more heavy hitters (they take mass out of the residual, shrinking the
    /// variance the sample must beat), and when the pilot alone met the tolerance it names fewer.
    /// </summary>
    private void TuneHeavy(LayerSnapshot layer, AttentionQuery query, int kvHead, int perRow, long heavyRows, long sampleRows, int pilotRows)
    {
        if (_statistics is null || query.Plan.Budget > 0)
        {
            return;
        }

        int next = perRow;
        if (sampleRows > pilotRows && sampleRows > heavyRows)
        {
            next = Math.Min(MaxHeavyPerRow, perRow * 2);
        }
        else if (sampleRows <= pilotRows)
        {
            next = Math.Max(MinTunedHeavyPerRow, perRow / 2);
        }

        _statistics.SetHeavyPerRow(_context, layer.Layer, kvHead, layer.Model.NumKvHeads, next);
    }

    /// <summary>
    /// Sinks, the unindexed tail and the group rows' heavy hitters, ascending, outside the exclude range. Each index
    /// segment names about twice its share of a row's budget (at least one cluster), and across segments each row
    /// keeps the <paramref name="perRow"/> named most strongly: the budget goes where the row's attention is, instead
    /// of one cluster per segment whatever the segment holds. Keys named for every row (outliers) are all kept.
    /// </summary>
    private long[] HeavyPositions(LayerSnapshot layer, AttentionQuery query, int kvHead, long perRow, out long summaries)
    {
        AttentionGeometry g = layer.Model.Geometry;
        int d = g.HeadDim;
        int rows = query.NumQueries * g.GroupSize;
        long sinks = AttentionSinks.End(layer.Tokens);
        long tail = layer.Tokens - _heavy.IndexedTokens;
        long named = 0;
        var perSegment = new int[_heavy.Segments.Count];
        for (int s = 0; s < perSegment.Length; s++)
        {
            IndexSegment segment = _heavy.Segments[s];
            long share = 2 * perRow * segment.Tokens / Math.Max(1, _heavy.IndexedTokens);
            perSegment[s] = (int)Math.Clamp(share, 1, perRow);
            named += ((IHeavyHitterIndex)segment[kvHead]).MaxHeavyHitters(rows, perSegment[s]);
        }

        int capacity = (int)Math.Min(int.MaxValue - 64, named);
        float[] groupRows = ArrayPool<float>.Shared.Rent(rows * d);
        long[] candidates = ArrayPool<long>.Shared.Rent(capacity);
        int[] namedFor = ArrayPool<int>.Shared.Rent(capacity);
        float[] ranks = ArrayPool<float>.Shared.Rent(capacity);
        long[] found = ArrayPool<long>.Shared.Rent((int)Math.Min(int.MaxValue - 64, sinks + tail + capacity));
        int[] rowEntries = ArrayPool<int>.Shared.Rent(capacity);
        float[] rowRanks = ArrayPool<float>.Shared.Rent(capacity);
        int[] best = ArrayPool<int>.Shared.Rent(capacity);
        try
        {
            for (int r = 0; r < rows; r++)
            {
                g.GroupRow(query.Queries, kvHead, r).CopyTo(groupRows.AsSpan(r * d, d));
            }

            int count = 0;
            summaries = 0;
            for (int s = 0; s < perSegment.Length; s++)
            {
                var index = (IHeavyHitterIndex)_heavy.Segments[s][kvHead];
                count += index.HeavyHitters(groupRows.AsSpan(0, rows * d), rows, perSegment[s], candidates.AsSpan(count), namedFor.AsSpan(count), ranks.AsSpan(count), out SearchStats stats);
                summaries += stats.SummariesScored;
            }

            int kept = 0;
            for (int i = 0; i < count; i++)
            {
                if (namedFor[i] < 0)
                {
                    found[kept++] = candidates[i];
                }
            }

            int k = (int)Math.Min(perRow, int.MaxValue);
            for (int r = 0; r < rows; r++)
            {
                int n = 0;
                for (int i = 0; i < count; i++)
                {
                    if (namedFor[i] == r)
                    {
                        rowEntries[n] = i;
                        rowRanks[n++] = ranks[i];
                    }
                }

                int chosen = TopKSelector.Select(rowRanks.AsSpan(0, n), k, best.AsSpan(0, Math.Min(n, k)));
                for (int i = 0; i < chosen; i++)
                {
                    found[kept++] = candidates[rowEntries[best[i]]];
                }
            }

            for (long p = 0; p < sinks; p++)
            {
                found[kept++] = p;
            }

            for (long p = _heavy.IndexedTokens; p < layer.Tokens; p++)
            {
                found[kept++] = p;
            }

            return IndexedPlan.SortedDistinct(found.AsSpan(0, kept), layer.Tokens, query.Exclude);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(groupRows);
            ArrayPool<long>.Shared.Return(candidates);
            ArrayPool<int>.Shared.Return(namedFor);
            ArrayPool<float>.Shared.Return(ranks);
            ArrayPool<long>.Shared.Return(found);
            ArrayPool<int>.Shared.Return(rowEntries);
            ArrayPool<float>.Shared.Return(rowRanks);
            ArrayPool<int>.Shared.Return(best);
        }
    }
}

using System.Buffers;
using System.Numerics.Tensors;
using KvDb.Kernels;
using KvDb.QueryEngine.Explain;
using KvDb.Store;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// One KV head's state while <see cref="VerifiedSamplingPlan"/> answers it: the group rows' running partial output
/// and log-sum-exp, the heavy part's log-sum-exp, and what the pilot measured per row (the variance of a residual
/// token's contribution, the estimated output norm and softmax denominator, relative to the heavy part's).
/// </summary>
internal sealed class SampledHead : IDisposable
{
    private readonly AttentionGeometry _g;
    private readonly AttentionQuery _query;
    private readonly int _kvHead;
    private readonly float[] _fullOutput;
    private readonly float[] _fullLse;
    private readonly float[] _output;
    private readonly float[] _lse;
    private readonly float[] _heavyLse;
    private readonly float[] _pilotOutput;
    private readonly float[] _pilotLse;
    private bool _attended;

    public SampledHead(AttentionGeometry g, AttentionQuery query, int kvHead)
    {
        _g = g;
        _query = query;
        _kvHead = kvHead;
        Rows = query.NumQueries * g.GroupSize;
        _fullOutput = ArrayPool<float>.Shared.Rent(query.Queries.Length);
        _fullLse = ArrayPool<float>.Shared.Rent(query.NumQueries * g.NumQueryHeads);
        _output = new float[Rows * g.HeadDim];
        _lse = new float[Rows];
        _heavyLse = new float[Rows];
        _pilotOutput = new float[Rows * g.HeadDim];
        _pilotLse = new float[Rows];
        Variance = new double[Rows];
        OutputNorm2 = new double[Rows];
        Denominator = new double[Rows];
    }

    /// <summary>Query rows of the group (query tokens × group size).</summary>
    public int Rows { get; }

    /// <summary>Per row: the pilot's estimate of the variance of wᵢ(vᵢ − o) over the residual (weights relative to the heavy part).</summary>
    public double[] Variance { get; }

    /// <summary>Per row: ‖o‖² of the pilot's estimate of the output.</summary>
    public double[] OutputNorm2 { get; }

    /// <summary>Per row: the pilot's estimate of the softmax denominator, relative to the heavy part's (heavy part = 1).</summary>
    public double[] Denominator { get; }

    /// <summary>
    /// Attends <paramref name="positions"/> (ascending) for every group row and merges the result, its log-sum-exp
    /// raised by <paramref name="scoreShift"/> (the sample's log-weight), into the running partial.
    /// </summary>
    public AttentionCounters Attend(LayerSnapshot layer, long[] positions, float scoreShift) =>
        AttendWith(layer, positions, scoreShift, withPilot: false);

    /// <summary>
    /// Attends the sample: the pilot's rows (already scored by <see cref="MeasurePilot"/>, not read again) and
    /// <paramref name="extra"/> (ascending), every score raised by <paramref name="scoreShift"/>, merged into the running partial.
    /// </summary>
    public AttentionCounters AttendSample(LayerSnapshot layer, long[] extra, float scoreShift) =>
        AttendWith(layer, extra, scoreShift, withPilot: true);

    private AttentionCounters AttendWith(LayerSnapshot layer, long[] positions, float scoreShift, bool withPilot)
    {
        int d = _g.HeadDim;
        var counters = default(AttentionCounters);
        Span<float> output = _fullOutput.AsSpan(0, _query.Queries.Length);
        Span<float> lse = _fullLse.AsSpan(0, _query.NumQueries * _g.NumQueryHeads);
        float[] partOutput = ArrayPool<float>.Shared.Rent(Rows * d);
        float[] partLse = ArrayPool<float>.Shared.Rent(Rows);
        try
        {
            if (positions.Length == 0)
            {
                partOutput.AsSpan(0, Rows * d).Clear();
                partLse.AsSpan(0, Rows).Fill(float.NegativeInfinity);
            }
            else
            {
                counters = GatheredAttentionKernel.Run(_g, layer.Blocks, _kvHead, positions, _query.Queries, _query.NumQueries, ReadOnlySpan<float>.Empty, output, lse);
                for (int r = 0; r < Rows; r++)
                {
                    long head = _g.QueryHead(r / _g.GroupSize, _kvHead, r % _g.GroupSize);
                    output.Slice((int)(head * d), d).CopyTo(partOutput.AsSpan(r * d, d));
                    partLse[r] = lse[(int)head];
                }
            }

            if (withPilot)
            {
                PartialAttention.MergeInto(partOutput.AsSpan(0, Rows * d), partLse.AsSpan(0, Rows), _pilotOutput, _pilotLse);
            }

            for (int r = 0; r < Rows; r++)
            {
                partLse[r] += scoreShift;
            }

            if (!_attended)
            {
                partOutput.AsSpan(0, Rows * d).CopyTo(_output);
                partLse.AsSpan(0, Rows).CopyTo(_lse);
                _attended = true;
            }
            else
            {
                PartialAttention.MergeInto(_output, _lse, partOutput.AsSpan(0, Rows * d), partLse.AsSpan(0, Rows));
            }

            return counters;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(partOutput);
            ArrayPool<float>.Shared.Return(partLse);
        }
    }

    /// <summary>Remembers the partial so far as the heavy part's.</summary>
    public void KeepHeavy() => _lse.CopyTo(_heavyLse, 0);

    /// <summary>
    /// Reads the pilot's keys and values and estimates, per row, the output, the denominator and the variance of a
    /// residual token's contribution; returns what it read.
    /// </summary>
    public AttentionCounters MeasurePilot(LayerSnapshot layer, long[] pilot, long residual)
    {
        int d = _g.HeadDim;
        int n = pilot.Length;
        float[] keys = ArrayPool<float>.Shared.Rent(n * d);
        float[] values = ArrayPool<float>.Shared.Rent(n * d);
        float[] scores = ArrayPool<float>.Shared.Rent(n);
        float[] weights = ArrayPool<float>.Shared.Rent(n);
        float[] valueNorms = ArrayPool<float>.Shared.Rent(n);
        float[] numerator = ArrayPool<float>.Shared.Rent(d);
        float[] estimate = ArrayPool<float>.Shared.Rent(d);
        try
        {
            KvBlockReader.ReadHeadRowPairsAt(_g, layer.Blocks, _kvHead, pilot, keys.AsSpan(0, n * d), values.AsSpan(0, n * d));
            for (int i = 0; i < n; i++)
            {
                valueNorms[i] = TensorPrimitives.SumOfSquares<float>(values.AsSpan(i * d, d));
            }

            double scale = (double)residual / n;
            Span<float> num = numerator.AsSpan(0, d);
            Span<float> o = estimate.AsSpan(0, d);
            Span<float> w = weights.AsSpan(0, n);
            Span<float> rowScores = scores.AsSpan(0, n);
            for (int r = 0; r < Rows; r++)
            {
                RowDotKernel.Scores(_g.GroupRow(_query.Queries, _kvHead, r), keys.AsSpan(0, n * d), rowScores);
                // The larger of the heavy part's log-sum-exp and the pilot's best score: no weight exceeds e^0 by much, so
                // nothing overflows; variance and denominator share the unit, and the sample size depends only on their ratio.
                double best = (double)_g.Scale * TensorPrimitives.Max(rowScores);
                double reference = float.IsFinite(_heavyLse[r]) ? Math.Max(_heavyLse[r], best) : best;

                double heavy = float.IsFinite(_heavyLse[r]) ? Math.Exp(_heavyLse[r] - reference) : 0;
                TensorPrimitives.Multiply(rowScores, _g.Scale, w);
                TensorPrimitives.Add(w, (float)-reference, w);
                TensorPrimitives.Exp(w, w);
                double weightSum = TensorPrimitives.Sum<float>(w);
                num.Clear();
                for (int i = 0; i < n; i++)
                {
                    TensorPrimitives.MultiplyAdd(values.AsSpan(i * d, d), w[i], num, num);
                }

                // The pilot's own partial (its rows are part of the sample; the sample pass does not read them again).
                if (weightSum > 0)
                {
                    TensorPrimitives.Multiply(num, (float)(1 / weightSum), _pilotOutput.AsSpan(r * d, d));
                    _pilotLse[r] = (float)(reference + Math.Log(weightSum));
                }
                else
                {
                    _pilotOutput.AsSpan(r * d, d).Clear();
                    _pilotLse[r] = float.NegativeInfinity;
                }

                double denominator = heavy + (scale * weightSum);
                TensorPrimitives.Multiply(_output.AsSpan(r * d, d), (float)(heavy / denominator), o);
                TensorPrimitives.MultiplyAdd(num, (float)(scale / denominator), o, o);
                double norm2 = TensorPrimitives.SumOfSquares<float>(o);

                // Var of yᵢ = wᵢ(vᵢ − o): (Σ‖yᵢ‖² − n‖ȳ‖²)/(n − 1), with ȳ = (Σwᵢvᵢ − Σwᵢ·o)/n and
                // ‖vᵢ − o‖² = ‖vᵢ‖² − 2vᵢ·o + ‖o‖² (one matrix-vector product instead of a distance per row).
                RowDotKernel.Scores(o, values.AsSpan(0, n * d), rowScores);
                double sumSquares = 0;
                for (int i = 0; i < n; i++)
                {
                    double distance2 = Math.Max(0, valueNorms[i] - (2.0 * rowScores[i]) + norm2);
                    sumSquares += (double)w[i] * w[i] * distance2;
                }

                TensorPrimitives.MultiplyAdd(o, (float)-weightSum, num, num);
                double meanNorm2 = TensorPrimitives.SumOfSquares<float>(num) / ((double)n * n);
                Variance[r] = n > 1 ? Math.Max(0, (sumSquares - (n * meanNorm2)) / (n - 1)) : 0;
                OutputNorm2[r] = norm2;
                Denominator[r] = denominator;
            }

            return new AttentionCounters((long)n * Rows, 0, 2L * n * _g.RowBytes);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(keys);
            ArrayPool<float>.Shared.Return(values);
            ArrayPool<float>.Shared.Return(scores);
            ArrayPool<float>.Shared.Return(weights);
            ArrayPool<float>.Shared.Return(valueNorms);
            ArrayPool<float>.Shared.Return(numerator);
            ArrayPool<float>.Shared.Return(estimate);
        }
    }

    /// <summary>
    /// Replaces each row's ‖o‖² by the square of a lower confidence bound on the true output's norm, ‖ô‖·(1 − err(n₀)),
    /// err(n₀) the pilot's own predicted relative error (0 when that is 1 or more: no relative bound is possible). The
    /// pilot's ‖ô‖ is a plug-in estimate: where the true output is near zero it is mostly the pilot's noise, and a sample
    /// sized against it would be far too small for a bound relative to the true output.
    /// </summary>
    public void LowerOutputNorms(long residual, int pilot, double factor)
    {
        for (int r = 0; r < Rows; r++)
        {
            double relative = VerifiedSamplingPlan.PredictedError(residual, pilot, Variance[r], OutputNorm2[r], Denominator[r], factor);
            OutputNorm2[r] = relative < 1 ? OutputNorm2[r] * (1 - relative) * (1 - relative) : 0;
        }
    }

    /// <summary>The selection carrying the merged answer and each row's quality; calls <paramref name="record"/> with the mean heavy mass.</summary>
    public HeadSelection Finish(long[] heavy, long[] sample, float logWeight, long residual, double factor, double epsilon, AttentionCounters counters, HeadChoice choice, Action<double> record)
    {
        var quality = new HeadQuality[Rows];
        double massSum = 0;
        for (int r = 0; r < Rows; r++)
        {
            double mass = float.IsFinite(_heavyLse[r]) && float.IsFinite(_lse[r]) ? Math.Min(1, Math.Exp((double)_heavyLse[r] - _lse[r])) : 0;
            massSum += mass;
            double predicted = sample.Length == 0 && residual == 0
                ? 0
                : VerifiedSamplingPlan.PredictedError(residual, sample.Length, Variance[r], OutputNorm2[r], Denominator[r], factor);
            int token = r / _g.GroupSize;
            int queryHead = (int)(_g.QueryHead(token, _kvHead, r % _g.GroupSize) - ((long)token * _g.NumQueryHeads));
            quality[r] = new HeadQuality(token, queryHead, _kvHead, residual == 0 ? "heavy" : "sampled", mass, epsilon, predicted, heavy.Length, sample.Length, residual);
        }

        record(massSum / Rows);
        var partial = new GroupPartial(_output, _lse, quality, counters);
        return HeadSelection.Computed(heavy, sample, logWeight, partial, choice);
    }

    public void Dispose()
    {
        ArrayPool<float>.Shared.Return(_fullOutput);
        ArrayPool<float>.Shared.Return(_fullLse);
    }
}

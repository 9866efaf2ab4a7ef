using System.Diagnostics;
using System.Runtime.InteropServices;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Plans;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.TestKit;

/// <summary>
/// Measures an index family on the synthetic workload: per KV head it generates the keys, decode queries
/// (every query head of the group is one query) and, for query-guided families, sample queries from a
/// different seed; exact scores give the reference top-k (k = 1% of tokens) and softmax. For a spec and
/// search parameters it reports the scanned fraction, top-k recall, softmax mass captured by the
/// candidates and build time per 1K tokens. Shared by the tests and the bench suite.
/// </summary>
public sealed class IndexQualityHarness
{
    private readonly SyntheticWorkload _workload;
    private readonly HeadData[] _heads;

    /// <summary>Generates keys and queries for <paramref name="kvHeads"/> heads of <paramref name="options"/>.</summary>
    public IndexQualityHarness(SyntheticWorkloadOptions options, int queries = 16, int sampleQueries = 512, ulong querySeed = 7, ulong sampleSeed = 1001, int[]? kvHeads = null)
    {
        _workload = new SyntheticWorkload(options);
        Tokens = (int)options.Tokens;
        Dimension = options.HeadDim;
        Scale = 1f / MathF.Sqrt(options.HeadDim);
        TopK = Math.Max(1, Tokens / 100);
        int h = options.NumKvHeads;
        int group = options.NumQueryHeads / h;
        int d = Dimension;
        var all = new float[(long)Tokens * h * d];
        _workload.FillKeys(0, Tokens, all);
        var allValues = new float[(long)Tokens * h * d];
        _workload.FillValues(0, Tokens, allValues);
        float[] test = _workload.Queries(queries, querySeed);
        float[] samples = sampleQueries > 0 ? _workload.Queries(sampleQueries, sampleSeed) : [];
        kvHeads ??= Enumerable.Range(0, h).ToArray();
        _heads = new HeadData[kvHeads.Length];
        for (int i = 0; i < kvHeads.Length; i++)
        {
            int kv = kvHeads[i];
            var keys = new float[Tokens * d];
            var values = new float[Tokens * d];
            for (int t = 0; t < Tokens; t++)
            {
                all.AsSpan((t * h + kv) * d, d).CopyTo(keys.AsSpan(t * d, d));
                allValues.AsSpan((t * h + kv) * d, d).CopyTo(values.AsSpan(t * d, d));
            }

            _heads[i] = new HeadData(kv, keys, values, GroupQueries(test, queries, kv, group, options.NumQueryHeads, d), GroupQueries(samples, sampleQueries, kv, group, options.NumQueryHeads, d), d, Scale, TopK);
        }
    }

    /// <summary>Tokens per head.</summary>
    public int Tokens { get; }

    /// <summary>Key dimension.</summary>
    public int Dimension { get; }

    /// <summary>Softmax scale 1/√d.</summary>
    public float Scale { get; }

    /// <summary>k of the recall measure: 1% of tokens.</summary>
    public int TopK { get; }

    /// <summary>The workload (for needles and diffuse-head flags).</summary>
    public SyntheticWorkload Workload => _workload;

    /// <summary>KV heads measured.</summary>
    public IReadOnlyList<int> KvHeads => _heads.Select(x => x.KvHead).ToArray();

    /// <summary>All positions 0..Tokens−1.</summary>
    public long[] Positions => Enumerable.Range(0, Tokens).Select(i => (long)i).ToArray();

    /// <summary>Keys of a measured head, f32 [Tokens, Dimension].</summary>
    public float[] Keys(int kvHead) => Head(kvHead).Keys;

    /// <summary>Values of a measured head, f32 [Tokens, Dimension].</summary>
    public float[] Values(int kvHead) => Head(kvHead).Values;

    /// <summary>Test queries of a head, f32 [count, Dimension].</summary>
    public float[] Queries(int kvHead) => Head(kvHead).Queries;

    /// <summary>Sample queries of a head (a different seed than the test queries), f32 [count, Dimension].</summary>
    public float[] Samples(int kvHead) => Head(kvHead).Samples;

    /// <summary>Exact reference (output, lse) of test query <paramref name="q"/> of a head, in f64.</summary>
    public (double[] Output, double Lse) Exact(int kvHead, int q) => Head(kvHead).ExactOutput(q);

    /// <summary>True when <paramref name="position"/> is in the exact top-k (k = 1% of tokens) of test query <paramref name="q"/>.</summary>
    public bool InExactTopK(int kvHead, int q, long position) => Array.IndexOf(Head(kvHead).TopKOf(q), (int)position) >= 0;

    /// <summary>Creates and builds an index for one head, feeding sample queries to query-guided families.</summary>
    public IKeyIndex Build(string spec, int kvHead, out double buildMicros)
    {
        HeadData head = Head(kvHead);
        IKeyIndex index = IndexFactory.Create(spec, Dimension);
        long started = Stopwatch.GetTimestamp();
        if (index is IQueryGuidedIndex guided && head.Samples.Length > 0)
        {
            guided.AddSampleQueries(head.Samples);
        }

        index.Build(head.Keys, Positions);
        buildMicros = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        return index;
    }

    /// <summary>Average quality of <paramref name="index"/> (built for <paramref name="kvHead"/>) over the head's test queries.</summary>
    public QualityReport Measure(IKeyIndex index, int kvHead, SearchParameters parameters)
    {
        HeadData head = Head(kvHead);
        var positions = new long[Math.Max(parameters.Budget, 1)];
        double scanned = 0;
        double attended = 0;
        double recall = 0;
        double mass = 0;
        int needlesFound = 0;
        IReadOnlyList<long> needles = _workload.NeedlePositions(kvHead);
        for (int q = 0; q < head.QueryCount; q++)
        {
            int got = index.Candidates(head.Query(q), parameters, positions, out SearchStats stats);
            scanned += stats.VectorsScanned;
            attended += got;
            (double r, double m) = head.Score(q, positions.AsSpan(0, got));
            recall += r;
            mass += m;
            foreach (long needle in needles)
            {
                needlesFound += positions.AsSpan(0, got).Contains(needle) ? 1 : 0;
            }
        }

        int n = head.QueryCount;
        return new QualityReport(index.Spec, Tokens, parameters, scanned / n / Tokens, attended / n / Tokens, recall / n, mass / n, 0)
        {
            NeedlesFound = needles.Count == 0 ? 1 : (double)needlesFound / (n * needles.Count),
        };
    }

    /// <summary>Builds <paramref name="spec"/> for every measured head and averages each parameter set's quality over them.</summary>
    public IReadOnlyList<QualityReport> Evaluate(string spec, IReadOnlyList<SearchParameters> sweep)
    {
        var sums = new QualityReport[sweep.Count];
        double buildPer1K = 0;
        double memory = 0;
        foreach (HeadData head in _heads)
        {
            using IKeyIndex index = Build(spec, head.KvHead, out double micros);
            buildPer1K += micros / (Tokens / 1000.0);
            memory += index.MemoryBytes;
            for (int i = 0; i < sweep.Count; i++)
            {
                QualityReport r = Measure(index, head.KvHead, sweep[i]);
                sums[i] = sums[i] is null ? r : sums[i] with
                {
                    ScannedFraction = sums[i].ScannedFraction + r.ScannedFraction,
                    AttendedFraction = sums[i].AttendedFraction + r.AttendedFraction,
                    Recall = sums[i].Recall + r.Recall,
                    Mass = sums[i].Mass + r.Mass,
                    NeedlesFound = sums[i].NeedlesFound + r.NeedlesFound,
                };
            }
        }

        int heads = _heads.Length;
        return sums.Select(s => s with
        {
            ScannedFraction = s.ScannedFraction / heads,
            AttendedFraction = s.AttendedFraction / heads,
            Recall = s.Recall / heads,
            Mass = s.Mass / heads,
            NeedlesFound = s.NeedlesFound / heads,
            BuildMicrosPer1K = buildPer1K / heads,
            MemoryBytes = (long)(memory / heads),
        }).ToArray();
    }

    /// <summary>
    /// LSH sampling through the query engine's own <see cref="LshSamplingPlan"/> (the code that serves requests), on
    /// one head with the engine's local window (the <paramref name="window"/> most recent tokens) excluded: the head's
    /// keys and values are stored (f32) as a one-KV-head layer, both indexes cover the first Tokens − window keys, and
    /// every test query is one request whose exclude range is the window. The deterministic rows are the sinks plus the
    /// top ⌈<paramref name="heavyFraction"/>·n⌉ candidates of <paramref name="heavySpec"/> (none when null: pure
    /// MagicPIG), the rest is estimated from <paramref name="sampleSpec"/>'s sample with weights 1/p. Reports the
    /// rel-L2 error of that remote partial against exact attention over the same keys, and of its merge (BRIEF §5)
    /// with the exact window partial against exact attention over all tokens.
    /// </summary>
    public SamplingReport MeasureSampling(int kvHead, string? heavySpec, string sampleSpec, double heavyFraction, int window)
    {
        HeadData head = Head(kvHead);
        int d = Dimension;
        int n = Tokens - window;
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 1L << 30, MaintenanceInterval = TimeSpan.Zero });
        store.CreateModel(new ModelSchema("harness", 1, 1, 1, d, KvDType.F32, 64, Scale));
        string context = store.CreateContext("harness", "", null, ReadOnlySpan<int>.Empty).Id;
        using (IAppendTransaction tx = store.BeginAppend(context))
        {
            int[] ids = Enumerable.Range(0, Tokens).ToArray();
            tx.Append(0, ids, MemoryMarshal.AsBytes(head.Keys.AsSpan()), MemoryMarshal.AsBytes(head.Values.AsSpan()));
            tx.Commit();
        }

        using LayerSnapshot layer = store.OpenLayer(context, 0);
        using LayerIndexes sample = new(sampleSpec, [IndexSegment.Build(layer, sampleSpec, 0, n, head.Samples)], ownsSegments: true);
        using LayerIndexes? heavy = heavySpec is null ? null : new(heavySpec, [IndexSegment.Build(layer, heavySpec, 0, n, head.Samples)], ownsSegments: true);
        var plan = new LshSamplingPlan(sample, heavy);
        long budget = Math.Min(n, Math.Max(16, (long)Math.Ceiling(n * heavyFraction)));
        var output = new float[d];
        var lseOut = new float[1];
        double remote = 0, remoteMax = 0, merged = 0, mergedMax = 0, lseError = 0, touched = 0;
        for (int q = 0; q < head.QueryCount; q++)
        {
            float[] query = head.Query(q).ToArray();
            var request = new AttentionQuery(context, 0, query, 1, n, Tokens, new PlanRequest(PlanKind.LshSampling, budget), false);
            HeadSelection selection = plan.Select(layer, request, 0);
            SelectionAttention.Run(layer, request, [selection], gpu: null, output, lseOut, out _);
            float lse = lseOut[0];
            ReadOnlySpan<float> keys = head.Keys.AsSpan(0, n * d);
            ReadOnlySpan<float> values = head.Values.AsSpan(0, n * d);
            (double[] remoteExact, double[] remoteLse) = ReferenceAttention.Compute(keys, values, query, 1, 1, 1, d, Scale);
            (double[] windowOut, double[] windowLse) = ReferenceAttention.Compute(head.Keys.AsSpan(n * d), head.Values.AsSpan(n * d), query, 1, 1, 1, d, Scale);
            double m = Math.Max(lse, windowLse[0]);
            double w1 = Math.Exp(lse - m);
            double w2 = Math.Exp(windowLse[0] - m);
            var mergedOut = new float[d];
            for (int i = 0; i < d; i++)
            {
                mergedOut[i] = (float)((w1 * output[i] + w2 * windowOut[i]) / (w1 + w2));
            }

            double r = ReferenceAttention.RelativeL2(output, remoteExact);
            double g = ReferenceAttention.RelativeL2(mergedOut, head.ExactOutput(q).Output);
            remote += r;
            remoteMax = Math.Max(remoteMax, r);
            merged += g;
            mergedMax = Math.Max(mergedMax, g);
            lseError += Math.Abs(lse - remoteLse[0]);
            touched += (double)selection.Positions.Length / n;
        }

        int c = head.QueryCount;
        return new SamplingReport(heavySpec, sample.Segments[0][0].Spec, n, window, remote / c, remoteMax, merged / c, mergedMax, lseError / c, touched / c);
    }

    private HeadData Head(int kvHead) => _heads.First(x => x.KvHead == kvHead);

    private static float[] GroupQueries(float[] queries, int count, int kv, int group, int numQueryHeads, int d)
    {
        var result = new float[count * group * d];
        for (int t = 0; t < count; t++)
        {
            for (int g = 0; g < group; g++)
            {
                queries.AsSpan((t * numQueryHeads + kv * group + g) * d, d).CopyTo(result.AsSpan((t * group + g) * d, d));
            }
        }

        return result;
    }

    /// <summary>One head's data and its exact reference per test query.</summary>
    private sealed class HeadData
    {
        private readonly int _d;
        private readonly float _scale;
        private readonly int[][] _topK;
        private readonly double[][] _probabilities;
        private readonly double[] _lse;

        public HeadData(int kvHead, float[] keys, float[] values, float[] queries, float[] samples, int d, float scale, int topK)
        {
            KvHead = kvHead;
            Keys = keys;
            Values = values;
            Queries = queries;
            Samples = samples;
            _d = d;
            _scale = scale;
            int n = keys.Length / d;
            _topK = new int[QueryCount][];
            _probabilities = new double[QueryCount][];
            _lse = new double[QueryCount];
            var scores = new float[n];
            for (int q = 0; q < QueryCount; q++)
            {
                RowDotKernel.Scores(Query(q), keys, scores);
                _topK[q] = new int[topK];
                TopKSelector.Select(scores, topK, _topK[q]);
                double max = double.NegativeInfinity;
                foreach (float s in scores)
                {
                    max = Math.Max(max, s * (double)scale);
                }

                var p = new double[n];
                double sum = 0;
                for (int j = 0; j < n; j++)
                {
                    p[j] = Math.Exp(scores[j] * (double)scale - max);
                    sum += p[j];
                }

                for (int j = 0; j < n; j++)
                {
                    p[j] /= sum;
                }

                _probabilities[q] = p;
                _lse[q] = max + Math.Log(sum);
            }
        }

        public int KvHead { get; }

        public float[] Keys { get; }

        public float[] Values { get; }

        public float[] Queries { get; }

        public float[] Samples { get; }

        public int QueryCount => Queries.Length / _d;

        public ReadOnlySpan<float> Query(int q) => Queries.AsSpan(q * _d, _d);

        public int[] TopKOf(int q) => _topK[q];

        public (double Recall, double Mass) Score(int q, ReadOnlySpan<long> candidates)
        {
            var set = new HashSet<long>();
            double mass = 0;
            foreach (long c in candidates)
            {
                if (set.Add(c))
                {
                    mass += _probabilities[q][c];
                }
            }

            int hit = 0;
            foreach (int t in _topK[q])
            {
                if (set.Contains(t))
                {
                    hit++;
                }
            }

            return ((double)hit / _topK[q].Length, mass);
        }

        public (double[] Output, double Lse) ExactOutput(int q)
        {
            var output = new double[_d];
            double[] p = _probabilities[q];
            for (int j = 0; j < p.Length; j++)
            {
                ReadOnlySpan<float> v = Values.AsSpan(j * _d, _d);
                for (int i = 0; i < _d; i++)
                {
                    output[i] += p[j] * v[i];
                }
            }

            return (output, _lse[q]);
        }
    }
}

/// <summary>
/// Quality of one (spec, parameters) on the synthetic workload: fraction of keys scanned (key-sized vectors
/// scored, summaries included) and attended, top-k recall, softmax mass captured, build µs per 1K tokens,
/// and the share of planted needles found.
/// </summary>
public sealed record QualityReport(string Spec, int Tokens, SearchParameters Parameters, double ScannedFraction, double AttendedFraction, double Recall, double Mass, double BuildMicrosPer1K)
{
    /// <summary>Index bytes per head (set by <see cref="IndexQualityHarness.Evaluate"/>).</summary>
    public long MemoryBytes { get; init; }

    /// <summary>Fraction of (query, planted needle) pairs whose needle was among the candidates.</summary>
    public double NeedlesFound { get; init; }
}

/// <summary>
/// Quality of LSH sampling on one head (<see cref="IndexQualityHarness.MeasureSampling"/>): mean and worst
/// rel-L2 of the remote partial over the indexed keys and of its merge with the exact local window, mean
/// |Δlse| of the remote partial, and the mean fraction of indexed keys attended per query row.
/// </summary>
public sealed record SamplingReport(string? HeavySpec, string SampleSpec, int IndexedTokens, int Window, double RemoteRelL2, double RemoteMaxRelL2, double MergedRelL2, double MergedMaxRelL2, double LseError, double TouchedFraction);

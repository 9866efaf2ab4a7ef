using System.Buffers;
using System.Numerics.Tensors;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// SimHash LSH (MagicPIG): L tables, each keyed by the signs of a key's projections on K random
/// hyperplanes. Keys are centred on their mean first: q·(k − μ) differs from q·k by the same constant for
/// every key, so softmax is unchanged, while the angle to the query — what SimHash measures — stops being
/// dominated by the shared offset. One table collides with probability (1 − θ/π)^K; a key counts as
/// sampled when it collides in at least T of the L tables. <see cref="Candidates"/> ranks keys by
/// collision count; <see cref="Sample"/> and <see cref="InclusionProbability"/> feed the importance-sampling
/// estimator (<see cref="LshSamplingEstimator"/>). With Q=1 (the factory default) and sample queries
/// the hyperplanes are drawn from N(0, Σ), Σ the query covariance plus a ridge of R% of its mean
/// eigenvalue, instead of N(0, I): two vectors then collide with probability 1 − θ_Σ/π, θ_Σ the angle
/// after whitening by Σ^½, which ignores key directions no query uses. On OOD queries this roughly
/// doubles the cosine of the keys that matter (needles found by collision count at a 2% budget: 35 of
/// 238 → 237), but also of every other key, so MagicPIG-style sampling takes far more keys (16–27% of
/// the synthetic workload instead of 1.7%). The query engine's LSH sampling plan therefore takes its
/// heavy hitters from a Q=1 index's collision counts and samples the rest from a Q=0 index with another seed.
/// Spec: "lsh[:K=8,L=75,T=2,S=seed,Q=0|1,R=ridge%]" (MagicPIG uses K=8–10, L=75–150; K=8, L=75 ranks as well as K=10, L=150 on the synthetic workload at half the memory).
/// </summary>
public sealed class LshIndex : IQueryGuidedIndex, ISamplingIndex, IIndexPayload
{

    private readonly int _bits;
    private readonly int _tables;
    private readonly int _threshold;
    private readonly ulong _seed;
    private readonly int _ridgePercent;
    private readonly bool _queryShaped;
    private float[] _planes = [];     // [dim, bits × tables]
    private float[] _mean = [];       // [dim]
    private float[] _metric = [];     // [dim, dim] query covariance Σ, empty = identity
    private readonly List<float> _samples = [];
    private float[] _norms = [];      // ‖k − μ‖ per row
    private long[] _positions = [];
    private int[] _bucketStart = [];  // [tables, 2^bits + 1]
    private int[] _bucketRows = [];   // [tables, n]
    private int _count;
    private float _maxNorm = 1;

    /// <summary>Creates an empty index with K bits per table, L tables and sampling threshold T.</summary>
    public LshIndex(int dimension, int bits = 10, int tables = 150, int threshold = 2, ulong seed = 0x51A4, bool queryShaped = false, int ridgePercent = 100)
    {
        _queryShaped = queryShaped;
        _ridgePercent = Math.Max(0, ridgePercent);
        if (dimension <= 0 || bits is < 1 or > 16 || tables is < 1 or > 4096 || threshold < 1 || threshold > tables)
        {
            throw new ArgumentException("lsh needs dimension > 0, K in 1..16, L in 1..4096 and T in 1..L");
        }

        Dimension = dimension;
        _bits = bits;
        _tables = tables;
        _threshold = threshold;
        _seed = seed;
    }

    /// <inheritdoc />
    public string Spec => $"lsh:K={_bits},L={_tables},T={_threshold},S={_seed},Q={(_queryShaped ? 1 : 0)},R={_ridgePercent}";

    /// <inheritdoc />
    public int Dimension { get; }

    /// <inheritdoc />
    public int Count => _count;

    /// <summary>Bits per table (K).</summary>
    public int Bits => _bits;

    /// <summary>Tables (L).</summary>
    public int Tables => _tables;

    /// <summary>Collisions needed for a key to count as sampled (T).</summary>
    public int Threshold => _threshold;

    /// <summary>Seed of the hyperplanes (S). Two indexes hash independently only when their seeds differ.</summary>
    public ulong Seed => _seed;

    /// <summary>The key mean the hashes are centred on.</summary>
    public ReadOnlySpan<float> Mean => _mean;

    /// <inheritdoc />
    public long MemoryBytes =>
        (_planes.Length + _mean.Length + _norms.Length) * (long)sizeof(float)
        + _positions.Length * (long)sizeof(long) + (_bucketStart.Length + _bucketRows.Length) * (long)sizeof(int);

    /// <summary>Sample queries held for the next build.</summary>
    public int SampleCount => _samples.Count / Dimension;

    /// <summary>True when hyperplanes follow the query covariance (sample queries were given at build).</summary>
    public bool IsQueryShaped => _metric.Length != 0;

    /// <inheritdoc />
    public void AddSampleQueries(ReadOnlySpan<float> queries)
    {
        if (queries.Length % Dimension != 0)
        {
            throw new ArgumentException($"sample queries must be [m, {Dimension}] floats", nameof(queries));
        }

        foreach (float v in queries)
        {
            _samples.Add(v);
        }
    }

    /// <summary>Position of row <paramref name="row"/>.</summary>
    public long PositionOf(int row) => _positions[row];

    /// <inheritdoc />
    public void Build(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        int d = Dimension;
        int n = positions.Length;
        _mean = new float[d];
        if (n > 0)
        {
            var sum = new double[d];
            for (int i = 0; i < n; i++)
            {
                ReadOnlySpan<float> k = keys.Slice(i * d, d);
                for (int j = 0; j < d; j++)
                {
                    sum[j] += k[j];
                }
            }

            for (int j = 0; j < d; j++)
            {
                _mean[j] = (float)(sum[j] / n);
            }
        }

        int planes = _bits * _tables;
        _planes = new float[d * planes];
        var rng = new KMeans.SplitMix(_seed);
        for (int i = 0; i < _planes.Length; i++)
        {
            _planes[i] = (float)rng.NextGaussian();
        }

        _metric = [];
        if (_queryShaped && _samples.Count > 0)
        {
            // h = C·g with Σ = C·Cᵀ turns N(0, I) planes into N(0, Σ) planes.
            _metric = QueryCovariance();
            double[] c = Cholesky(_metric, d);
            var shaped = new float[_planes.Length];
            for (int i = 0; i < d; i++)
            {
                Span<float> row = shaped.AsSpan(i * planes, planes);
                for (int j = 0; j <= i; j++)
                {
                    TensorPrimitives.MultiplyAdd(_planes.AsSpan(j * planes, planes), (float)c[i * d + j], row, row);
                }
            }

            _planes = shaped;
        }

        _count = 0;
        _maxNorm = 1e-6f;
        _bucketStart = [];
        _bucketRows = [];
        _norms = [];
        _positions = [];
        Append(keys, positions);
    }

    /// <inheritdoc />
    public void Extend(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        if (_planes.Length == 0)
        {
            Build(keys, positions);
            return;
        }

        KeyRows.CheckShape(keys, positions, Dimension);
        Append(keys, positions);
    }

    /// <inheritdoc />
    public int Candidates(ReadOnlySpan<float> query, in SearchParameters parameters, Span<long> positions, out SearchStats stats)
    {
        int budget = Math.Min(parameters.Budget, positions.Length);
        if (_count == 0 || budget <= 0)
        {
            stats = default;
            return 0;
        }

        ushort[] counts = ArrayPool<ushort>.Shared.Rent(_count);
        int[] touched = ArrayPool<int>.Shared.Rent(_count + budget);
        float[] scores = ArrayPool<float>.Shared.Rent(_count);
        try
        {
            int distinct = Collide(query, counts, touched, out long entries);
            for (int i = 0; i < distinct; i++)
            {
                // Ties in collision count are broken by the key's (metric) norm: at equal angle a longer
                // key has the larger score, and counts tie a lot with L in the hundreds.
                int row = touched[i];
                scores[i] = counts[row] + 0.999f * _norms[row] / _maxNorm;
            }

            Span<int> best = touched.AsSpan(_count, budget);
            int written = TopKSelector.Select(scores.AsSpan(0, distinct), budget, best);
            for (int i = 0; i < written; i++)
            {
                positions[i] = _positions[touched[best[i]]];
            }

            stats = new SearchStats(0, 0, entries);
            return written;
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(counts);
            ArrayPool<int>.Shared.Return(touched);
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    /// <summary>
    /// Rows that collide with <paramref name="query"/> in at least T tables (MagicPIG's sample), written to
    /// <paramref name="rows"/> (length ≥ Count) in row order; returns how many.
    /// </summary>
    public int Sample(ReadOnlySpan<float> query, Span<int> rows, out SearchStats stats)
    {
        if (_count == 0)
        {
            stats = default;
            return 0;
        }

        ushort[] counts = ArrayPool<ushort>.Shared.Rent(_count);
        int[] touched = ArrayPool<int>.Shared.Rent(_count);
        try
        {
            int distinct = Collide(query, counts, touched, out long entries);
            int written = 0;
            for (int i = 0; i < distinct; i++)
            {
                int row = touched[i];
                if (counts[row] >= _threshold)
                {
                    rows[written++] = row;
                }
            }

            rows[..written].Sort();
            stats = new SearchStats(0, 0, entries);
            return written;
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(counts);
            ArrayPool<int>.Shared.Return(touched);
        }
    }

    /// <summary>
    /// Probability that a key at angle θ to the query is sampled: one table collides with
    /// u = (1 − θ/π)^K, and the key is sampled when at least T of the L independent tables collide,
    /// P = 1 − Σ_{i&lt;T} C(L,i) u^i (1−u)^{L−i}.
    /// </summary>
    public double InclusionProbability(double cosine)
    {
        double theta = Math.Acos(Math.Clamp(cosine, -1.0, 1.0));
        double u = Math.Pow(1.0 - theta / Math.PI, _bits);
        if (u >= 1.0)
        {
            return 1.0;
        }

        double miss = 0;
        double term = Math.Pow(1.0 - u, _tables); // i = 0
        for (int i = 0; i < _threshold; i++)
        {
            miss += term;
            term *= (double)(_tables - i) / (i + 1) * u / (1.0 - u);
        }

        return Math.Clamp(1.0 - miss, 0.0, 1.0);
    }

    /// <summary>
    /// The vector whose dot with a key gives the hash geometry's inner product: Σ·q (q itself without
    /// sample queries). Writes it to <paramref name="metricQuery"/> and returns (Σq·μ, ‖q‖_Σ) for
    /// <see cref="CenteredCosine"/>.
    /// </summary>
    public (double MetricQueryDotMean, double MetricQueryNorm) PrepareQuery(ReadOnlySpan<float> query, Span<float> metricQuery)
    {
        int d = Dimension;
        if (_metric.Length == 0)
        {
            query.CopyTo(metricQuery);
        }
        else
        {
            RowDotKernel.Scores(query, _metric, metricQuery[..d]);
        }

        double norm = Math.Sqrt(Math.Max(0, TensorPrimitives.Dot(query, metricQuery[..d])));
        return (TensorPrimitives.Dot(metricQuery[..d], _mean), norm);
    }

    /// <summary>
    /// cos θ_Σ between the query and the centred key of <paramref name="row"/>, from Σq·k computed by the
    /// caller with the vector of <see cref="PrepareQuery"/>: Σq·(k − μ) = Σq·k − Σq·μ.
    /// </summary>
    public double CenteredCosine(int row, double metricQueryDotKey, double metricQueryDotMean, double metricQueryNorm)
    {
        double denominator = metricQueryNorm * _norms[row];
        return denominator > 0 ? (metricQueryDotKey - metricQueryDotMean) / denominator : 0;
    }

    /// <inheritdoc />
    public void Save(Stream stream)
    {
        using BinaryWriter w = IndexFormat.Writer(stream);
        IndexFormat.WriteHeader(w, Spec, Dimension);
        w.Write(_count);
        IndexFormat.WriteArray<float>(w, _planes);
        IndexFormat.WriteArray<float>(w, _mean);
        IndexFormat.WriteArray<float>(w, _metric);
        IndexFormat.WriteArray<float>(w, _norms.AsSpan(0, _count));
        IndexFormat.WriteArray<ushort>(w, CodesFromBuckets());
        IndexFormat.WriteArray<long>(w, _positions.AsSpan(0, _count));
    }

    /// <summary>Reads the payload written by <see cref="Save"/> after the header; bucket tables are rebuilt.</summary>
    void IIndexPayload.LoadPayload(BinaryReader r)
    {
        _count = r.ReadInt32();
        _planes = IndexFormat.ReadArray<float>(r);
        _mean = IndexFormat.ReadArray<float>(r);
        _metric = IndexFormat.ReadArray<float>(r);
        _norms = IndexFormat.ReadArray<float>(r);
        ushort[] codes = IndexFormat.ReadArray<ushort>(r);
        _positions = IndexFormat.ReadArray<long>(r);
        if (_planes.Length != Dimension * _bits * _tables || (_metric.Length != 0 && _metric.Length != Dimension * Dimension) || _norms.Length != _count || codes.Length != _count * _tables || _positions.Length != _count)
        {
            throw new InvalidDataException("lsh index stream: tables do not match the spec");
        }

        int buckets = 1 << _bits;
        foreach (ushort code in codes)
        {
            if (code >= buckets)
            {
                throw new InvalidDataException($"lsh index stream: a code ({code}) has more than {_bits} bits");
            }
        }

        _maxNorm = _count == 0 ? 1 : Math.Max(1e-6f, TensorPrimitives.Max(_norms.AsSpan(0, _count)));
        AppendToBuckets(codes, 0, _count);
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    /// <summary>Counts per-row collisions with the query's buckets; returns distinct rows hit (listed in <paramref name="touched"/>).</summary>
    private int Collide(ReadOnlySpan<float> query, ushort[] counts, int[] touched, out long entries)
    {
        if (query.Length != Dimension)
        {
            throw new ArgumentException($"query must have {Dimension} dimensions", nameof(query));
        }

        Span<ushort> code = _tables <= 1024 ? stackalloc ushort[_tables] : new ushort[_tables];
        SimHashKernel.Hash(query, 1, Dimension, _planes, _bits, _tables, code);
        Array.Clear(counts, 0, _count);
        int buckets = 1 << _bits;
        int distinct = 0;
        entries = 0;
        for (int t = 0; t < _tables; t++)
        {
            int b = t * (buckets + 1) + code[t];
            int from = _bucketStart[b];
            int to = _bucketStart[b + 1];
            entries += to - from;
            ReadOnlySpan<int> members = _bucketRows.AsSpan(t * _count + from, to - from);
            foreach (int row in members)
            {
                if (counts[row]++ == 0)
                {
                    touched[distinct++] = row;
                }
            }
        }

        return distinct;
    }

    private void Append(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        int d = Dimension;
        int n = positions.Length;
        int total = _count + n;
        Array.Resize(ref _norms, total);
        Array.Resize(ref _positions, total);
        var centred = new float[n * d];
        var metricKey = new float[d];
        for (int i = 0; i < n; i++)
        {
            Span<float> c = centred.AsSpan(i * d, d);
            TensorPrimitives.Subtract(keys.Slice(i * d, d), _mean, c);
            if (_metric.Length == 0)
            {
                _norms[_count + i] = TensorPrimitives.Norm(c);
            }
            else
            {
                RowDotKernel.Scores(c, _metric, metricKey);
                _norms[_count + i] = MathF.Sqrt(Math.Max(0, TensorPrimitives.Dot(c, metricKey)));
            }
        }

        var codes = new ushort[n * _tables];
        SimHashKernel.Hash(centred, n, d, _planes, _bits, _tables, codes);
        if (total > 0)
        {
            _maxNorm = Math.Max(_maxNorm, TensorPrimitives.Max(_norms.AsSpan(0, total)));
        }
        positions.CopyTo(_positions.AsSpan(_count));
        AppendToBuckets(codes, _count, n);
        _count = total;
    }

    /// <summary>
    /// Adds rows oldCount … oldCount + added − 1 (their codes [added, tables]) to the CSR bucket lists: per table
    /// a counting sort of the new rows placed behind each bucket's old rows, so rows stay ascending within a
    /// bucket exactly as a full rebuild would leave them. The per-row codes are not kept afterwards (they would
    /// cost 2 bytes × tables per key; the bucket lists already say which bucket each row is in).
    /// </summary>
    private void AppendToBuckets(ReadOnlySpan<ushort> codes, int oldCount, int added)
    {
        int buckets = 1 << _bits;
        int total = oldCount + added;
        var start = new int[_tables * (buckets + 1)];
        var rows = new int[_tables * total];
        int[] fill = ArrayPool<int>.Shared.Rent(buckets);
        try
        {
            for (int t = 0; t < _tables; t++)
            {
                Span<int> s = start.AsSpan(t * (buckets + 1), buckets + 1);
                ReadOnlySpan<int> oldStart = oldCount == 0 ? default : _bucketStart.AsSpan(t * (buckets + 1), buckets + 1);
                ReadOnlySpan<int> oldRows = oldCount == 0 ? default : _bucketRows.AsSpan(t * oldCount, oldCount);
                for (int b = 0; b < buckets; b++)
                {
                    s[b + 1] = oldCount == 0 ? 0 : oldStart[b + 1] - oldStart[b];
                }

                for (int i = 0; i < added; i++)
                {
                    s[codes[(i * _tables) + t] + 1]++;
                }

                for (int b = 0; b < buckets; b++)
                {
                    s[b + 1] += s[b];
                }

                Span<int> r = rows.AsSpan(t * total, total);
                for (int b = 0; b < buckets; b++)
                {
                    int before = oldCount == 0 ? 0 : oldStart[b + 1] - oldStart[b];
                    if (before > 0)
                    {
                        oldRows.Slice(oldStart[b], before).CopyTo(r.Slice(s[b], before));
                    }

                    fill[b] = s[b] + before;
                }

                for (int i = 0; i < added; i++)
                {
                    r[fill[codes[(i * _tables) + t]]++] = oldCount + i;
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(fill);
        }

        _bucketStart = start;
        _bucketRows = rows;
    }

    /// <summary>The per-row codes [n, tables] read back from the bucket lists (for Save; the file format keeps codes).</summary>
    private ushort[] CodesFromBuckets()
    {
        int buckets = 1 << _bits;
        var codes = new ushort[_count * _tables];
        for (int t = 0; t < _tables && _count > 0; t++)
        {
            ReadOnlySpan<int> s = _bucketStart.AsSpan(t * (buckets + 1), buckets + 1);
            ReadOnlySpan<int> r = _bucketRows.AsSpan(t * _count, _count);
            for (int b = 0; b < buckets; b++)
            {
                for (int k = s[b]; k < s[b + 1]; k++)
                {
                    codes[(r[k] * _tables) + t] = (ushort)b;
                }
            }
        }

        return codes;
    }

    /// <summary>Σ = QᵀQ/m over the sample queries plus a ridge of R% of its mean eigenvalue (so directions no sample used still hash), [dim, dim].</summary>
    private float[] QueryCovariance()
    {
        int d = Dimension;
        int m = _samples.Count / d;
        ReadOnlySpan<float> q = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_samples);
        var sigma = new double[d * d];
        for (int s = 0; s < m; s++)
        {
            ReadOnlySpan<float> x = q.Slice(s * d, d);
            for (int i = 0; i < d; i++)
            {
                double xi = x[i];
                for (int j = 0; j <= i; j++)
                {
                    sigma[i * d + j] += xi * x[j];
                }
            }
        }

        double trace = 0;
        for (int i = 0; i < d; i++)
        {
            trace += sigma[i * d + i] / m;
        }

        double ridge = _ridgePercent / 100.0 * trace / d;
        var result = new float[d * d];
        for (int i = 0; i < d; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double v = sigma[i * d + j] / m + (i == j ? ridge : 0);
                result[i * d + j] = (float)v;
                result[j * d + i] = (float)v;
            }
        }

        return result;
    }

    /// <summary>Lower-triangular C with C·Cᵀ = a (a symmetric positive definite, [d, d]).</summary>
    private static double[] Cholesky(float[] a, int d)
    {
        var c = new double[d * d];
        for (int i = 0; i < d; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double sum = a[i * d + j];
                for (int k = 0; k < j; k++)
                {
                    sum -= c[i * d + k] * c[j * d + k];
                }

                c[i * d + j] = i == j ? Math.Sqrt(Math.Max(sum, 1e-12)) : sum / c[j * d + j];
            }
        }

        return c;
    }
}

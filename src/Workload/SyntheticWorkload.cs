using KvDb.Kernels;

namespace KvDb.Workload;

/// <summary>
/// Deterministic keys, values and queries shaped like real attention: low-rank keys with a mean offset
/// and per-channel outliers, attention sinks, a recent window, planted needles, and queries drawn from a
/// different subspace than keys (RetrievalAttention's out-of-distribution finding). Any token range can
/// be generated independently, so a million-token context streams without being held in memory.
/// </summary>
public sealed class SyntheticWorkload
{
    private readonly SyntheticWorkloadOptions _o;
    private readonly float[][] _keyBasis;     // per KV head: [rank, dim]
    private readonly float[][] _queryBasis;   // per KV head: [rank, dim]
    private readonly float[][] _keyMean;      // per KV head: [dim]
    private readonly float[][] _sinkDir;      // per KV head: unit [dim]
    private readonly float[][] _recentDir;    // per KV head: unit [dim]
    private readonly float[][][] _needleDirs; // per KV head, per needle: unit [dim]
    private readonly long[][] _needles;       // per KV head: sorted positions
    private readonly int[] _outliers;
    private readonly bool[] _diffuse;
    private readonly bool[] _topical;
    private readonly float[][][] _topicDirs;  // per topical KV head, per topic: unit [dim]
    private readonly double[] _topicCdf;      // Zipf cumulative weights over topics

    /// <summary>Builds the fixed per-head structure from the options' seed.</summary>
    public SyntheticWorkload(SyntheticWorkloadOptions options)
    {
        if (options.NumKvHeads <= 0 || options.NumQueryHeads % options.NumKvHeads != 0 || options.HeadDim < 8 || options.Tokens < 0)
        {
            throw new ArgumentException("need num_query_heads a multiple of num_kv_heads, head_dim ≥ 8 and tokens ≥ 0", nameof(options));
        }

        _o = options;
        int h = options.NumKvHeads;
        int d = options.HeadDim;
        var rng = new DeterministicRandom(DeterministicRandom.Mix(options.Seed, (ulong)options.Layer, 0xC0FFEE));
        _keyBasis = new float[h][];
        _queryBasis = new float[h][];
        _keyMean = new float[h][];
        _sinkDir = new float[h][];
        _recentDir = new float[h][];
        _needleDirs = new float[h][][];
        _needles = new long[h][];
        _diffuse = new bool[h];
        _outliers = new int[Math.Min(options.OutlierChannels, d)];
        for (int i = 0; i < _outliers.Length; i++)
        {
            _outliers[i] = (int)((i * 37L + 5) % d);
        }

        int diffuseCount = (int)Math.Round(options.DiffuseHeadFraction * h);
        for (int kv = 0; kv < h; kv++)
        {
            _keyBasis[kv] = Gaussian(ref rng, options.KeyRank * d, 1.0 / Math.Sqrt(options.KeyRank));
            _queryBasis[kv] = Gaussian(ref rng, options.KeyRank * d, 1.0 / Math.Sqrt(options.KeyRank));
            _keyMean[kv] = Gaussian(ref rng, d, 0.5);
            _sinkDir[kv] = Unit(Gaussian(ref rng, d, 1));
            _recentDir[kv] = Unit(Gaussian(ref rng, d, 1));
            _needleDirs[kv] = new float[options.NeedlesPerHead][];
            _needles[kv] = new long[options.NeedlesPerHead];
            long lo = options.SinkTokens;
            long hi = Math.Max(lo + 1, options.Tokens - options.RecentWindow);
            for (int n = 0; n < options.NeedlesPerHead; n++)
            {
                _needleDirs[kv][n] = Unit(Gaussian(ref rng, d, 1));
                long span = Math.Max(1, (hi - lo) / Math.Max(1, options.NeedlesPerHead));
                _needles[kv][n] = Math.Min(options.Tokens - 1, lo + n * span + (long)(rng.NextDouble() * span));
            }

            Array.Sort(_needles[kv]);
            _diffuse[kv] = kv < diffuseCount;
        }

        // Topical heads draw from their own generator, so adding them changes nothing about the other heads.
        int topicalCount = (int)Math.Round(options.TopicalHeadFraction * h);
        _topical = new bool[h];
        _topicDirs = new float[h][][];
        _topicCdf = ZipfCdf(Math.Max(1, options.Topics), options.TopicZipfExponent);
        var topicRng = new DeterministicRandom(DeterministicRandom.Mix(options.Seed, (ulong)options.Layer, 0x70B1C));
        for (int kv = diffuseCount; kv < Math.Min(h, diffuseCount + topicalCount); kv++)
        {
            _topical[kv] = true;
            _topicDirs[kv] = new float[_topicCdf.Length][];
            for (int topic = 0; topic < _topicCdf.Length; topic++)
            {
                _topicDirs[kv][topic] = Unit(Gaussian(ref topicRng, d, 1));
            }
        }
    }

    /// <summary>The options this workload was built from.</summary>
    public SyntheticWorkloadOptions Options => _o;

    /// <summary>Positions of the planted needles of a KV head, ascending.</summary>
    public IReadOnlyList<long> NeedlePositions(int kvHead) => _needles[kvHead];

    /// <summary>True when the KV head's queries are weak (its attention is diffuse).</summary>
    public bool IsDiffuseHead(int kvHead) => _diffuse[kvHead];

    /// <summary>True when the KV head's attention has a heavy tail over topics (<see cref="SyntheticWorkloadOptions.TopicalHeadFraction"/>).</summary>
    public bool IsTopicalHead(int kvHead) => _topical[kvHead];

    /// <summary>The topic of token <paramref name="position"/> on a topical KV head (Zipf-distributed; 0 is the most common).</summary>
    public int TopicOf(int kvHead, long position)
    {
        var rng = new DeterministicRandom(DeterministicRandom.Mix(_o.Seed ^ 0x70B1C, (ulong)position, (ulong)(kvHead + 1) * 7919 + (ulong)_o.Layer * 104729));
        return Zipf(_topicCdf, rng.NextDouble());
    }

    /// <summary>Token ids of [start, start + destination.Length): a deterministic pseudo-random vocabulary stream.</summary>
    public void FillTokenIds(long start, Span<int> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = (int)(DeterministicRandom.Mix(_o.Seed, (ulong)(start + i), 0x70CE7) % 128_000);
        }
    }

    /// <summary>Keys of tokens [start, start + count) as f32 [count, NumKvHeads, HeadDim].</summary>
    public void FillKeys(long start, int count, Span<float> destination)
    {
        int h = _o.NumKvHeads;
        int d = _o.HeadDim;
        CheckLength(destination, count);
        Span<float> z = stackalloc float[_o.KeyRank];
        for (int t = 0; t < count; t++)
        {
            long pos = start + t;
            for (int kv = 0; kv < h; kv++)
            {
                var rng = new DeterministicRandom(DeterministicRandom.Mix(_o.Seed, (ulong)pos, (ulong)(kv + 1) * 7919 + (ulong)_o.Layer * 104729));
                Span<float> k = destination.Slice((t * h + kv) * d, d);
                for (int r = 0; r < z.Length; r++)
                {
                    z[r] = (float)rng.NextGaussian();
                }

                Project(z, _keyBasis[kv], k);
                float[] mean = _keyMean[kv];
                for (int i = 0; i < d; i++)
                {
                    k[i] += mean[i] + 0.05f * (float)rng.NextGaussian();
                }

                foreach (int c in _outliers)
                {
                    k[c] = k[c] * 4f + 3f;
                }

                if (pos < _o.SinkTokens)
                {
                    AddScaled(k, _sinkDir[kv], 24f);
                }

                if (pos >= _o.Tokens - _o.RecentWindow)
                {
                    AddScaled(k, _recentDir[kv], 6f);
                }

                int needle = Array.IndexOf(_needles[kv], pos);
                if (needle >= 0)
                {
                    AddScaled(k, _needleDirs[kv][needle], 40f);
                }

                if (_topical[kv])
                {
                    AddScaled(k, _topicDirs[kv][TopicOf(kv, pos)], TopicKeyStrength);
                }
            }
        }
    }

    /// <summary>Values of tokens [start, start + count) as f32 [count, NumKvHeads, HeadDim].</summary>
    public void FillValues(long start, int count, Span<float> destination)
    {
        int h = _o.NumKvHeads;
        int d = _o.HeadDim;
        CheckLength(destination, count);
        for (int t = 0; t < count; t++)
        {
            for (int kv = 0; kv < h; kv++)
            {
                var rng = new DeterministicRandom(DeterministicRandom.Mix(_o.Seed ^ 0x5A5A5A5A, (ulong)(start + t), (ulong)(kv + 1) * 7919 + (ulong)_o.Layer * 104729));
                Span<float> v = destination.Slice((t * h + kv) * d, d);
                for (int i = 0; i < d; i++)
                {
                    v[i] = (float)rng.NextGaussian();
                }
            }
        }
    }

    /// <summary>Keys of [start, start + count) encoded as raw bytes of <paramref name="dtype"/>.</summary>
    public byte[] KeyBytes(KvDType dtype, long start, int count) => Encode(dtype, count, (s, c, dst) => FillKeys(s, c, dst), start);

    /// <summary>Values of [start, start + count) encoded as raw bytes of <paramref name="dtype"/>.</summary>
    public byte[] ValueBytes(KvDType dtype, long start, int count) => Encode(dtype, count, (s, c, dst) => FillValues(s, c, dst), start);

    // Topical heads: a topic direction adds ≈ key × query strength × scale (≈ 6 × 10 / √128 ≈ 5) to the score of
    // every token of the query's first topic, against a random-key spread of 2–3: a topic's tokens carry most of the
    // mass, and a common topic has thousands of them.
    private const float TopicKeyStrength = 6f;
    private const float TopicQueryStrength = 10f;
    private const int TopicsPerQuery = 2;

    // Magnitudes are set for scale = 1/sqrt(head_dim): random-key scores have std ≈ 2–3 (outlier channels
    // and the query's own structure add to the low-rank part), sinks sit ≈ 8 above the mean and needles
    // ≈ 30. A needle's score also carries its own key's random part and the query's low-rank leak onto
    // its direction, each a few units; at ≈ 10 above the mean that put one needle in six outside the top
    // 1%, so needles are planted strongly enough that every one ranks in its head's top 1% (NeedleRankTests).

    /// <summary>
    /// Decode queries f32 [count, NumQueryHeads, HeadDim]: a sink component, a recency component, every
    /// needle direction of the head, and a low-rank part from a basis different from the keys'.
    /// </summary>
    public float[] Queries(int count, ulong seed)
    {
        int hq = _o.NumQueryHeads;
        int group = hq / _o.NumKvHeads;
        int d = _o.HeadDim;
        var result = new float[count * hq * d];
        Span<float> z = stackalloc float[_o.KeyRank];
        for (int t = 0; t < count; t++)
        {
            for (int qh = 0; qh < hq; qh++)
            {
                int kv = qh / group;
                var rng = new DeterministicRandom(DeterministicRandom.Mix(seed, (ulong)(t * hq + qh), _o.Seed + (ulong)_o.Layer));
                Span<float> q = result.AsSpan((t * hq + qh) * d, d);
                for (int r = 0; r < z.Length; r++)
                {
                    z[r] = (float)rng.NextGaussian();
                }

                Project(z, _queryBasis[kv], q);
                AddScaled(q, _sinkDir[kv], 4f);
                AddScaled(q, _recentDir[kv], 4f);
                // Topical heads ask for topics, not needles: a needle (score ≈ 30) would otherwise take all the mass.
                if (!_topical[kv])
                {
                    foreach (float[] needle in _needleDirs[kv])
                    {
                        AddScaled(q, needle, 8f + (float)rng.NextDouble());
                    }
                }

                if (_diffuse[kv])
                {
                    for (int i = 0; i < d; i++)
                    {
                        q[i] *= 0.05f;
                    }
                }

                if (_topical[kv])
                {
                    // A few topics per query, drawn like tokens' topics (a common topic is asked about more often),
                    // weighted so the first dominates.
                    for (int pick = 0; pick < TopicsPerQuery; pick++)
                    {
                        int topic = Zipf(_topicCdf, rng.NextDouble());
                        AddScaled(q, _topicDirs[kv][topic], TopicQueryStrength / (pick + 1));
                    }
                }
            }
        }

        return result;
    }

    private static double[] ZipfCdf(int topics, double exponent)
    {
        var cdf = new double[topics];
        double total = 0;
        for (int r = 0; r < topics; r++)
        {
            total += 1.0 / Math.Pow(r + 1, exponent);
            cdf[r] = total;
        }

        for (int r = 0; r < topics; r++)
        {
            cdf[r] /= total;
        }

        return cdf;
    }

    private static int Zipf(double[] cdf, double u)
    {
        int i = Array.BinarySearch(cdf, u);
        return Math.Min(cdf.Length - 1, i >= 0 ? i : ~i);
    }

    private byte[] Encode(KvDType dtype, int count, Action<long, int, float[]> fill, long start)
    {
        var f = new float[count * _o.NumKvHeads * _o.HeadDim];
        fill(start, count, f);
        return ElementConversion.FromSingle(dtype, f);
    }

    private void CheckLength(Span<float> destination, int count)
    {
        if (destination.Length < count * _o.NumKvHeads * _o.HeadDim)
        {
            throw new ArgumentException("destination must hold count × NumKvHeads × HeadDim floats", nameof(destination));
        }
    }

    private static void Project(ReadOnlySpan<float> z, float[] basis, Span<float> destination)
    {
        int d = destination.Length;
        destination.Clear();
        for (int r = 0; r < z.Length; r++)
        {
            AddScaled(destination, basis.AsSpan(r * d, d), z[r]);
        }
    }

    private static void AddScaled(Span<float> destination, ReadOnlySpan<float> direction, float scale)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] += direction[i] * scale;
        }
    }

    private static float[] Gaussian(ref DeterministicRandom rng, int n, double std)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = (float)(rng.NextGaussian() * std);
        }

        return v;
    }

    private static float[] Unit(float[] v)
    {
        double norm = 0;
        foreach (float x in v)
        {
            norm += x * x;
        }

        float inv = (float)(1.0 / Math.Sqrt(norm));
        for (int i = 0; i < v.Length; i++)
        {
            v[i] *= inv;
        }

        return v;
    }
}

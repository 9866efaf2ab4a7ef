namespace KvDb.Kernels.Cuda;

/// <summary>
/// AUTO on the device for one layer: per KV head the centroid index's heavy hitters (searched on the GPU by
/// <c>kvdb_auto_select</c>, one search per query row of the GQA group, united), attended exactly, plus a uniform sample
/// of the residual weighted residual/n, merged with a per-query-head error bound (<c>kvdb_auto_merge</c>): the estimator
/// of VerifiedSamplingPlan with the sample drawn with replacement. Queries in, answer and bounds out, one host
/// synchronization per try. A head whose bound exceeds epsilon gets a larger sample (n·(bound/ε)², up to
/// <see cref="MaxSample"/>); past that, or when the sample cannot be drawn, the layer is answered exactly on the device.
/// Buffers are sized once per layer shape and reused; calls on one instance are serialized.
/// </summary>
public sealed class GpuAutoAttention : IDisposable
{
    /// <summary>Largest sample per KV head a retry may draw before the layer is answered exactly.</summary>
    public const int MaxSample = 16384;

    /// <summary>Positions at the start of the context that are always attended (as <c>AttentionSinks.Count</c>).</summary>
    public const int Sinks = 4;

    private readonly object _gate = new();
    private readonly CudaAttentionBackend _backend;
    private readonly DeviceCentroidIndex _index;
    private readonly AttentionGeometry _geometry;
    private readonly int _numQueries;
    private readonly int _perRow;
    private readonly int _perHeadCapacity;
    private readonly int _bitmapWords;
    private readonly DeviceBuffer _queries;
    private readonly DeviceBuffer _heavy;
    private readonly DeviceBuffer _heavyOffsets;
    private readonly DeviceBuffer _sample;
    private readonly DeviceBuffer _sampleOffsets;
    private readonly DeviceBuffer _residual;
    private readonly DeviceBuffer _flags;
    private readonly DeviceBuffer _bitmap;
    private readonly DeviceBuffer _counts;
    private readonly DeviceBuffer _partials;
    private readonly DeviceBuffer _answer;
    private readonly float[] _host;

    /// <summary>
    /// Prepares AUTO over a layer of <paramref name="numTokens"/> tokens whose first <see cref="DeviceCentroidIndex.IndexedTokens"/>
    /// are indexed by <paramref name="index"/>, for <paramref name="numQueries"/> query tokens, naming
    /// <paramref name="perRow"/> heavy hitters per query row.
    /// </summary>
    public GpuAutoAttention(CudaAttentionBackend backend, in AttentionGeometry geometry, DeviceCentroidIndex index, long numTokens, int numQueries, int perRow)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(index);
        if (!IsAvailable)
        {
            throw new InvalidOperationException($"the CUDA library at {CudaRuntime.LibraryPath} was built without the AUTO kernels (kvdb_auto.cu)");
        }

        geometry.Validate();
        if (index.KvHeads != geometry.NumKvHeads || index.Dimension != geometry.HeadDim || numTokens < index.IndexedTokens || numQueries <= 0 || perRow <= 0)
        {
            throw new ArgumentException("the index must match the geometry, cover at most numTokens, and numQueries and perRow must be positive");
        }

        _backend = backend;
        _index = index;
        _geometry = geometry;
        NumTokens = numTokens;
        _numQueries = numQueries;
        _perRow = perRow;
        int rows = numQueries * geometry.GroupSize;
        long perHead = ((long)rows * (perRow + index.LargestCluster)) + index.MaxOutliers + Sinks + (numTokens - index.IndexedTokens);
        if (perHead * geometry.NumKvHeads > int.MaxValue - 65536)
        {
            throw new ArgumentException("the heavy hitters of one query would not fit 32-bit offsets");
        }

        _perHeadCapacity = (int)perHead;
        _bitmapWords = (int)((index.IndexedTokens + 31) / 32);
        int h = geometry.NumKvHeads;
        long outFloats = (long)numQueries * geometry.NumQueryHeads * geometry.HeadDim;
        long heads = (long)numQueries * geometry.NumQueryHeads;
        int device = backend.Device;
        var made = new List<DeviceBuffer>();
        DeviceBuffer Make(long bytes, bool zero = false)
        {
            var b = new DeviceBuffer(Math.Max(16, bytes), device);
            made.Add(b);
            if (zero)
            {
                CudaRuntime.Memset(b.Pointer, 0, b.Bytes);
            }

            return b;
        }

        try
        {
            _queries = Make(outFloats * sizeof(float));
            _heavy = Make(perHead * h * sizeof(int));
            _heavyOffsets = Make((h + 1) * sizeof(int));
            _sample = Make((long)MaxSample * h * sizeof(int));
            _sampleOffsets = Make((h + 1) * sizeof(int));
            _residual = Make(h * sizeof(float));
            _flags = Make((long)index.FineCount * sizeof(uint), zero: true);
            _bitmap = Make((long)_bitmapWords * h * sizeof(uint), zero: true);
            _counts = Make(h * sizeof(int));
            _partials = Make(((2 * outFloats) + (2 * heads)) * sizeof(float));
            _answer = Make(AnswerFloats(outFloats, heads) * sizeof(float));
        }
        catch
        {
            foreach (DeviceBuffer b in made)
            {
                b.Dispose();
            }

            throw;
        }

        _host = new float[AnswerFloats(outFloats, heads)];
    }

    /// <summary>Tokens of the layer.</summary>
    public long NumTokens { get; }

    /// <summary>True when the loaded CUDA library has the AUTO kernels (kvdb_auto.cu compiled into it).</summary>
    public static unsafe bool IsAvailable => CudaRuntime.IsAvailable && CudaRuntime.Native.AutoSelect != null && CudaRuntime.Native.AutoMerge != null;

    /// <summary>
    /// Answers <paramref name="queries"/> (f32 [numQueries, Hq, d]) over <paramref name="kv"/> within relative L2 error
    /// <paramref name="epsilon"/> per query head with probability 1 − <paramref name="delta"/>, starting from a sample of
    /// <paramref name="sample"/> per KV head. Writes output and LSE like <see cref="CudaAttentionBackend.Attention"/>.
    /// </summary>
    public GpuAutoOutcome Answer(in GpuKvSource kv, ReadOnlySpan<float> queries, long excludeStart, long excludeEnd, double epsilon, double delta, int sample, ulong seed, Span<float> output, Span<float> lse)
    {
        if (kv.NumTokens != NumTokens)
        {
            throw new ArgumentException($"the source has {kv.NumTokens} tokens, this AUTO was prepared for {NumTokens}");
        }

        long outFloats = (long)_numQueries * _geometry.NumQueryHeads * _geometry.HeadDim;
        int heads = _numQueries * _geometry.NumQueryHeads;
        if (queries.Length != outFloats || output.Length != outFloats || lse.Length != heads)
        {
            throw new ArgumentException("queries and output must hold numQueries × Hq × d floats and lse numQueries × Hq");
        }

        if (!(epsilon > 0) || !(delta is > 0 and < 1) || sample < 0 || sample > MaxSample)
        {
            throw new ArgumentException($"need epsilon > 0, 0 < delta < 1 and 0 ≤ sample ≤ {MaxSample}");
        }

        float factor = Concentration(delta);
        lock (_gate)
        {
            _queries.Upload(queries);
            int tries = 0;
            int n = sample;
            while (true)
            {
                tries++;
                Queue(kv, excludeStart, excludeEnd, n, factor, seed + (ulong)tries);
                _backend.Synchronize();
                _answer.Download<float>(_host);
                int status = BitConverter.SingleToInt32Bits(_host[outFloats + (3 * heads)]);
                float worst = 0;
                for (int i = 0; i < heads; i++)
                {
                    worst = Math.Max(worst, _host[outFloats + heads + i]);
                }

                if (status == 0 && worst <= epsilon)
                {
                    return Finish(outFloats, heads, n, tries, exact: false, output, lse);
                }

                double grown = n * Math.Pow(worst / epsilon, 2) * 1.1;
                if (status != 0 || n == 0 || !(grown <= MaxSample))
                {
                    _backend.AttentionAsync(_geometry, kv, default, _queries.Pointer, _numQueries, excludeStart, excludeEnd, _answer.Pointer, _answer.Pointer + (nint)(outFloats * sizeof(float)));
                    _backend.Synchronize();
                    _answer.Download<float>(_host.AsSpan(0, (int)(outFloats + heads)));
                    _host.AsSpan((int)(outFloats + heads), 2 * heads).Clear();
                    return Finish(outFloats, heads, 0, tries, exact: true, output, lse);
                }

                n = Math.Max(n + 1, (int)Math.Ceiling(grown));
            }
        }
    }

    /// <summary>Queues one try without waiting (benchmarks of concurrent requests); the caller synchronizes the backend.</summary>
    public void QueueTry(in GpuKvSource kv, ReadOnlySpan<float> queries, int sample, ulong seed, double delta)
    {
        lock (_gate)
        {
            _queries.Upload(queries);
            Queue(kv, 0, 0, sample, Concentration(delta), seed);
        }
    }

    /// <summary>The heavy positions of KV head <paramref name="kvHead"/> from the last try (diagnostics and parity tests).</summary>
    public int[] HeavyPositions(int kvHead)
    {
        lock (_gate)
        {
            var offsets = new int[_geometry.NumKvHeads + 1];
            _heavyOffsets.Download<int>(offsets);
            var all = new int[offsets[^1]];
            _heavy.Download<int>(all);
            return all[offsets[kvHead]..offsets[kvHead + 1]];
        }
    }

    /// <summary>The sample of KV head <paramref name="kvHead"/> from the last try, and the residual it was drawn from.</summary>
    public (int[] Positions, float Residual) Sample(int kvHead, int sample)
    {
        lock (_gate)
        {
            var all = new int[sample * _geometry.NumKvHeads];
            _sample.Download<int>(all);
            var residual = new float[_geometry.NumKvHeads];
            _residual.Download<float>(residual);
            return (all[(kvHead * sample)..((kvHead + 1) * sample)], residual[kvHead]);
        }
    }

    /// <summary>Frees the device buffers.</summary>
    public void Dispose()
    {
        foreach (DeviceBuffer b in new[] { _queries, _heavy, _heavyOffsets, _sample, _sampleOffsets, _residual, _flags, _bitmap, _counts, _partials, _answer })
        {
            b.Dispose();
        }
    }

    private static long AnswerFloats(long outFloats, long heads) => outFloats + (3 * heads) + 4;

    /// <summary>(1 + √(2 ln(1/δ)))², the factor of VerifiedSamplingPlan.ConcentrationFactor (QueryEngine, which Kernels cannot reference).</summary>
    private static float Concentration(double delta)
    {
        double t = 1 + Math.Sqrt(2 * Math.Log(1 / delta));
        return (float)(t * t);
    }

    private void Queue(in GpuKvSource kv, long excludeStart, long excludeEnd, int n, float factor, ulong seed)
    {
        AttentionGeometry g = _geometry;
        int h = g.NumKvHeads;
        long outFloats = (long)_numQueries * g.NumQueryHeads * g.HeadDim;
        long heads = (long)_numQueries * g.NumQueryHeads;
        nint heavyOut = _partials.Pointer;
        nint sampleOut = heavyOut + (nint)(outFloats * sizeof(float));
        nint heavyLse = sampleOut + (nint)(outFloats * sizeof(float));
        nint sampleLse = heavyLse + (nint)(heads * sizeof(float));
        nint answer = _answer.Pointer;
        nint answerLse = answer + (nint)(outFloats * sizeof(float));
        nint bound = answerLse + (nint)(heads * sizeof(float));
        nint mass = bound + (nint)(heads * sizeof(float));
        nint status = mass + (nint)(heads * sizeof(float));
        var select = new KvdbAutoSelectArgs
        {
            Index = _index.Layout,
            Queries = _queries.Pointer,
            HeavyPositions = _heavy.Pointer,
            HeavyOffsets = _heavyOffsets.Pointer,
            SamplePositions = _sample.Pointer,
            SampleOffsets = _sampleOffsets.Pointer,
            Residual = _residual.Pointer,
            Flags = _flags.Pointer,
            Bitmap = _bitmap.Pointer,
            Counts = _counts.Pointer,
            Status = status,
            Seed = seed,
            NumTokens = NumTokens,
            ExcludeStart = excludeStart,
            ExcludeEnd = excludeEnd,
            HeavyCapacity = (long)_perHeadCapacity * h,
            NumQueries = _numQueries,
            NumQueryHeads = g.NumQueryHeads,
            NumKvHeads = h,
            HeadDim = g.HeadDim,
            PerRow = _perRow,
            ProbeMembers = (int)Math.Min(int.MaxValue, 8L * _perRow),
            SampleSize = n,
            Sinks = Sinks,
            BitmapWords = _bitmapWords,
        };
        _backend.AutoSelectAsync(select);
        _backend.AttentionAsync(g, kv, new GpuSelection(_heavy.Pointer, _heavyOffsets.Pointer, _perHeadCapacity), _queries.Pointer, _numQueries, excludeStart, excludeEnd, heavyOut, heavyLse);
        _backend.AttentionAsync(g, kv, new GpuSelection(_sample.Pointer, _sampleOffsets.Pointer, Math.Max(1, n)), _queries.Pointer, _numQueries, excludeStart, excludeEnd, sampleOut, sampleLse);
        var merge = new KvdbAutoMergeArgs
        {
            HeavyOutput = heavyOut,
            HeavyLse = heavyLse,
            SampleOutput = sampleOut,
            SampleLse = sampleLse,
            SamplePositions = _sample.Pointer,
            Residual = _residual.Pointer,
            Bound = bound,
            HeavyMass = mass,
            SampleSize = n,
            Factor = factor,
        };
        _backend.AutoMergeAsync(g, kv, _queries.Pointer, _numQueries, excludeStart, excludeEnd, answer, answerLse, merge);
    }

    private GpuAutoOutcome Finish(long outFloats, int heads, int sample, int tries, bool exact, Span<float> output, Span<float> lse)
    {
        _host.AsSpan(0, (int)outFloats).CopyTo(output);
        _host.AsSpan((int)outFloats, heads).CopyTo(lse);
        float[] bounds = _host.AsSpan((int)outFloats + heads, heads).ToArray();
        float[] masses = _host.AsSpan((int)outFloats + (2 * heads), heads).ToArray();
        if (exact)
        {
            Array.Fill(masses, 1f);
        }

        return new GpuAutoOutcome(exact, sample, tries, bounds, masses);
    }
}

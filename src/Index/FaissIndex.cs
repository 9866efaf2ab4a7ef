using System.Buffers;
using System.Runtime.InteropServices;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// Faiss baseline (the plain, query-agnostic ANN the attention-aware graph must beat): IndexHNSWFlat or
/// IndexIVFFlat with inner-product metric, through the libkvfaiss.so C shim. Faiss labels are row ordinals;
/// positions are mapped here. Keys scanned are faiss's own distance-computation counters (hnsw_stats /
/// indexIVF_stats, plus IVF's list centroids), read under a lock because faiss keeps them in globals.
/// Keys far from the key mean (<see cref="OutlierKeys"/>, at most O‰, default 5 as for block summaries)
/// are scored exactly on every search and compete with faiss's results by inner product: on the synthetic workload inner-product HNSW32
/// missed 22 of 256 needles at its default efSearch (HNSW16 still 32 at efSearch 16× the budget, 43% of keys
/// scanned) and IVF 101 of 256 at nprobe = nlist/16, every needle being in the exact top 1%. O=0 gives
/// the pure baseline.
/// Spec: "faiss:HNSW32[,efc=40,ef=64,O=5]" or "faiss:IVF[nlist][,nprobe=8,O=5]" (nlist 0 or absent = 4·√n).
/// </summary>
public sealed class FaissIndex : IKeyIndex, IIndexPayload
{
    private static readonly Lock StatsLock = new();

    private readonly FaissKind _kind;
    private readonly int _size;
    private readonly int _efConstruction;
    private readonly int _effort;
    private readonly List<long> _positions = [];
    private readonly OutlierKeys _outliers;
    private FaissHandle? _handle;
    private int _lists;

    /// <summary>
    /// Creates an empty faiss index. <paramref name="size"/> is M for HNSW and nlist for IVF (0 = 4·√n at build);
    /// <paramref name="effort"/> is the default efSearch / nprobe (0 = max(budget, 64) / nlist/16);
    /// <paramref name="outlierPermille"/> caps the always-returned far-off keys (0 = none).
    /// </summary>
    public FaissIndex(int dimension, FaissKind kind, int size, int efConstruction = 40, int effort = 0, int outlierPermille = 5)
    {
        if (dimension <= 0 || size < 0 || (kind == FaissKind.Hnsw && size < 2) || efConstruction < 1 || effort < 0)
        {
            throw new ArgumentException("faiss index needs dimension > 0, HNSW M ≥ 2 or IVF nlist ≥ 0, efConstruction ≥ 1");
        }

        if (!IsAvailable)
        {
            throw new DllNotFoundException("libkvfaiss.so was not found next to the assemblies or at $KVDB_FAISS_LIBRARY; build it with src/Index/native/build.sh");
        }

        Dimension = dimension;
        _kind = kind;
        _size = size;
        _efConstruction = efConstruction;
        _effort = effort;
        _outliers = new OutlierKeys(dimension, outlierPermille);
    }

    /// <summary>True when libkvfaiss.so could be loaded.</summary>
    public static bool IsAvailable => FaissNativeMethods.IsAvailable;

    /// <inheritdoc />
    public string Spec => _kind == FaissKind.Hnsw
        ? $"faiss:HNSW{_size},efc={_efConstruction},ef={_effort},O={_outliers.Permille}"
        : $"faiss:IVF{_size},nprobe={_effort},O={_outliers.Permille}";

    /// <inheritdoc />
    public int Dimension { get; }

    /// <inheritdoc />
    public int Count => _positions.Count;

    /// <summary>IVF lists in use (0 for HNSW or before the first build).</summary>
    public int Lists => _lists;

    /// <inheritdoc />
    public long MemoryBytes
    {
        get
        {
            // Vectors plus graph links (HNSW: ≈ 2M int32 per node on level 0) or list ids (IVF: one int64 each).
            long perKey = Dimension * (long)sizeof(float) + (_kind == FaissKind.Hnsw ? 2L * _size * sizeof(int) : sizeof(long));
            return Count * (perKey + sizeof(long)) + (long)_lists * Dimension * sizeof(float) + _outliers.MemoryBytes;
        }
    }

    /// <inheritdoc />
    public void Build(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        _handle?.Dispose();
        _handle = null;
        _positions.Clear();
        _outliers.Clear();
        Create(positions.Length);
        Extend(keys, positions);
    }

    /// <inheritdoc />
    public void Extend(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        if (positions.IsEmpty)
        {
            return;
        }

        if (_handle is null)
        {
            Create(positions.Length);
        }

        FaissHandle handle = _handle!;
        ref float first = ref MemoryMarshal.GetReference(keys);
        if (FaissNativeMethods.IsTrained(handle) == 0)
        {
            FaissNativeMethods.Check(FaissNativeMethods.Train(handle, positions.Length, ref first), "train");
        }

        FaissNativeMethods.Check(FaissNativeMethods.Add(handle, positions.Length, ref first), "add");
        _outliers.Add(keys, positions, _positions.Count);
        foreach (long p in positions)
        {
            _positions.Add(p);
        }
    }

    /// <inheritdoc />
    public int Candidates(ReadOnlySpan<float> query, in SearchParameters parameters, Span<long> positions, out SearchStats stats)
    {
        if (query.Length != Dimension)
        {
            throw new ArgumentException($"query must have {Dimension} dimensions", nameof(query));
        }

        int budget = Math.Min(Math.Min(parameters.Budget, positions.Length), Count);
        if (_handle is null || budget <= 0)
        {
            stats = default;
            return 0;
        }

        int effort = parameters.Effort > 0 ? parameters.Effort : _effort > 0 ? _effort : DefaultEffort(budget);
        if (_kind == FaissKind.Hnsw)
        {
            // efSearch below k would return fewer than k results.
            effort = Math.Max(effort, budget);
        }

        int outlierCount = _outliers.Count;
        float[] distances = ArrayPool<float>.Shared.Rent(budget + outlierCount);
        long[] labels = ArrayPool<long>.Shared.Rent(budget + outlierCount);
        int[] best = ArrayPool<int>.Shared.Rent(budget);
        try
        {
            long ndis;
            lock (StatsLock)
            {
                FaissNativeMethods.Check(
                    FaissNativeMethods.Search(_handle, 1, ref MemoryMarshal.GetReference(query), budget, effort, ref distances[0], ref labels[0], out ndis),
                    "search");
            }

            // Faiss's results (label → position, inner product) that are not outliers, then the outliers
            // with their exact inner products; the best `budget` of the pool by score are returned.
            ReadOnlySpan<long> outliers = _outliers.Positions;
            int pool = 0;
            for (int i = 0; i < budget; i++)
            {
                long label = labels[i];
                if (label >= 0 && label < _positions.Count && (outlierCount == 0 || !outliers.Contains(_positions[(int)label])))
                {
                    distances[pool] = distances[i];
                    labels[pool++] = _positions[(int)label];
                }
            }

            if (outlierCount == 0)
            {
                labels.AsSpan(0, pool).CopyTo(positions);
                stats = new SearchStats(ndis, 0, 0);
                return pool;
            }

            _outliers.Scores(query, distances.AsSpan(pool, outlierCount));
            outliers.CopyTo(labels.AsSpan(pool, outlierCount));
            pool += outlierCount;
            int written = TopKSelector.Select(distances.AsSpan(0, pool), Math.Min(budget, pool), best);
            for (int i = 0; i < written; i++)
            {
                positions[i] = labels[best[i]];
            }

            stats = new SearchStats(ndis + outlierCount, 0, 0);
            return written;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(distances);
            ArrayPool<long>.Shared.Return(labels);
            ArrayPool<int>.Shared.Return(best);
        }
    }

    /// <inheritdoc />
    public void Save(Stream stream)
    {
        using BinaryWriter w = IndexFormat.Writer(stream);
        IndexFormat.WriteHeader(w, Spec, Dimension);
        w.Write(_lists);
        IndexFormat.WriteArray<long>(w, CollectionsMarshal.AsSpan(_positions));
        _outliers.Save(w);
        if (_handle is null)
        {
            w.Write(0L);
            return;
        }

        FaissNativeMethods.Check(FaissNativeMethods.Serialize(_handle, out IntPtr data, out long length), "serialize");
        try
        {
            w.Write(length);
            var bytes = new byte[length];
            Marshal.Copy(data, bytes, 0, (int)length);
            w.Write(bytes);
        }
        finally
        {
            FaissNativeMethods.FreeBuffer(data);
        }
    }

    /// <summary>Reads the payload written by <see cref="Save"/> after the header.</summary>
    void IIndexPayload.LoadPayload(BinaryReader r)
    {
        _lists = r.ReadInt32();
        _positions.Clear();
        _positions.AddRange(IndexFormat.ReadArray<long>(r));
        _outliers.Load(r);
        long length = r.ReadInt64();
        if (length == 0)
        {
            return;
        }

        byte[] bytes = r.ReadBytes(checked((int)length));
        if (bytes.Length != length)
        {
            throw new EndOfStreamException("faiss index stream ended early");
        }

        FaissNativeMethods.Check(FaissNativeMethods.Deserialize(ref bytes[0], length, out IntPtr raw), "deserialize");
        _handle?.Dispose();
        _handle = new FaissHandle(raw);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _handle?.Dispose();
        _handle = null;
    }

    private int DefaultEffort(int budget) => _kind == FaissKind.Hnsw ? Math.Max(budget, 64) : Math.Max(1, _lists / 16);

    private void Create(int expectedKeys)
    {
        IntPtr raw;
        if (_kind == FaissKind.Hnsw)
        {
            FaissNativeMethods.Check(FaissNativeMethods.CreateHnsw(Dimension, _size, _efConstruction, out raw), "create HNSW");
        }
        else
        {
            _lists = _size > 0 ? _size : Math.Max(1, (int)(4 * Math.Sqrt(expectedKeys)));
            _lists = Math.Min(_lists, Math.Max(1, expectedKeys));
            FaissNativeMethods.Check(FaissNativeMethods.CreateIvf(Dimension, _lists, out raw), "create IVF");
        }

        _handle = new FaissHandle(raw);
    }
}

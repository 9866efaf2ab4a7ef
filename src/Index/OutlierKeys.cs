using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// Keys far from the key mean (squared distance above <see cref="Factor"/>× the average, at most O‰ of the
/// keys, farthest first): sinks and needles. They can dominate a query's softmax yet sit where a
/// query-agnostic structure reaches them badly (an inner-product HNSW graph leaves them poorly linked, an
/// IVF list's centroid averages them away), so families score them exactly on every search (their f32 keys
/// are kept here). The first batch fixes the mean and the average; later batches are judged against them,
/// and the cap grows with the key count.
/// </summary>
internal sealed class OutlierKeys
{
    /// <summary>A key is an outlier when its squared distance to the mean is this many times the average.</summary>
    public const float Factor = 2.5f;

    private readonly int _dimension;
    private readonly int _permille;
    private readonly List<long> _positions = [];
    private readonly List<float> _keys = [];
    private float[] _mean = [];
    private float _spread;

    public OutlierKeys(int dimension, int permille)
    {
        _dimension = dimension;
        _permille = Math.Max(0, permille);
    }

    /// <summary>O: the cap on outliers, per mille of the keys.</summary>
    public int Permille => _permille;

    /// <summary>Positions of the outliers, farthest first within each batch.</summary>
    public ReadOnlySpan<long> Positions => CollectionsMarshal.AsSpan(_positions);

    public int Count => _positions.Count;

    public long MemoryBytes => (long)_positions.Capacity * sizeof(long) + ((long)_keys.Capacity + _mean.Length) * sizeof(float);

    /// <summary>Exact q·k of every outlier, in <see cref="Positions"/> order.</summary>
    public void Scores(ReadOnlySpan<float> query, Span<float> scores) => RowDotKernel.Scores(query, CollectionsMarshal.AsSpan(_keys), scores[.._positions.Count]);

    public void Clear()
    {
        _positions.Clear();
        _keys.Clear();
        _mean = [];
        _spread = 0;
    }

    /// <summary>Flags the outliers of a batch of <paramref name="positions"/>.Length keys; <paramref name="indexedBefore"/> keys came before it.</summary>
    public void Add(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions, int indexedBefore)
    {
        int d = _dimension;
        foreach (int row in FarRows(keys, positions.Length, d, ref _mean, ref _spread, _positions.Count, indexedBefore, _permille))
        {
            _positions.Add(positions[row]);
            foreach (float v in keys.Slice(row * d, d))
            {
                _keys.Add(v);
            }
        }
    }

    /// <summary>
    /// The rows of a batch of <paramref name="n"/> keys (0-based in the batch) whose squared distance to the key
    /// mean is above <see cref="Factor"/>× the average, farthest first, as many as keep the total at most
    /// <paramref name="permille"/>‰ of all keys (<paramref name="keptBefore"/> are already kept). The first batch
    /// fixes <paramref name="mean"/> and <paramref name="spread"/> (the average); later batches are judged against them.
    /// </summary>
    internal static List<int> FarRows(ReadOnlySpan<float> keys, int n, int dimension, ref float[] mean, ref float spread, int keptBefore, int indexedBefore, int permille)
    {
        int d = dimension;
        var rows = new List<int>();
        if (permille == 0 || n == 0)
        {
            return rows;
        }

        if (mean.Length == 0)
        {
            mean = new float[d];
            for (int i = 0; i < n; i++)
            {
                TensorPrimitives.Add(mean, keys.Slice(i * d, d), mean);
            }

            TensorPrimitives.Multiply(mean, 1f / n, mean);
        }

        var distances = new float[n];
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            float distance = TensorPrimitives.Distance(keys.Slice(i * d, d), mean);
            distances[i] = distance * distance;
            sum += distances[i];
        }

        if (spread == 0)
        {
            spread = (float)(sum / n);
        }

        var far = new List<(float Distance, int Row)>();
        for (int i = 0; i < n; i++)
        {
            if (distances[i] > Factor * spread)
            {
                far.Add((distances[i], i));
            }
        }

        far.Sort((a, b) => b.Distance.CompareTo(a.Distance));
        int cap = (int)Math.Max(1, (long)(indexedBefore + n) * permille / 1000) - keptBefore;
        for (int i = 0; i < far.Count && i < cap; i++)
        {
            rows.Add(far[i].Row);
        }

        return rows;
    }

    public void Save(BinaryWriter w)
    {
        IndexFormat.WriteArray<long>(w, CollectionsMarshal.AsSpan(_positions));
        IndexFormat.WriteArray<float>(w, CollectionsMarshal.AsSpan(_keys));
        IndexFormat.WriteArray<float>(w, _mean);
        w.Write(_spread);
    }

    public void Load(BinaryReader r)
    {
        _positions.Clear();
        _positions.AddRange(IndexFormat.ReadArray<long>(r));
        _keys.Clear();
        _keys.AddRange(IndexFormat.ReadArray<float>(r));
        _mean = IndexFormat.ReadArray<float>(r);
        _spread = r.ReadSingle();
        if ((_mean.Length is not 0 && _mean.Length != _dimension) || _keys.Count != (long)_positions.Count * _dimension)
        {
            throw new InvalidDataException("index stream: outlier mean does not match the dimension");
        }
    }
}

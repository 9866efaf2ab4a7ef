using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// Quest's block summaries: rows are grouped into blocks of <c>B</c> consecutive keys, and each block keeps
/// its mean key and per-dimension min and max. Since q·k = Σ_d q_d·k_d and each k_d lies in [min_d, max_d],
/// Σ_d max(q_d·min_d, q_d·max_d) bounds every score in the block from above; the search returns whole
/// blocks in order of that bound until the budget is filled. Summaries cost 3 vectors per block and no keys.
/// Outlier keys (squared distance to the key mean above <see cref="OutlierKeys.Factor"/>× the average, at most
/// O‰ of keys: sinks, needles) are returned before any block: in 128 dimensions a needle lifts its
/// block's bound far less than its own score, so pure Quest found only 221 of 238 top-1% needles at a 2%
/// budget on the synthetic workload (O=0 turns this off).
/// Spec: "block[:B=16,O=5]".
/// </summary>
public sealed class BlockSummaryIndex : IRangeSearchIndex, IGroupSearchIndex, IIndexPayload
{
    private readonly int _blockSize;
    private readonly int _outlierPermille;
    private readonly List<int> _outliers = [];
    private readonly HashSet<int> _outlierRows = [];
    private float[] _mean = [];
    private float _spread;
    private readonly List<float> _min = [];
    private readonly List<float> _max = [];
    private readonly List<float> _sum = [];
    private readonly List<long> _positions = [];

    /// <summary>Creates an empty index over <paramref name="dimension"/>-dimensional keys, blocks of <paramref name="blockSize"/> rows.</summary>
    public BlockSummaryIndex(int dimension, int blockSize = 16, int outlierPermille = 5)
    {
        _outlierPermille = Math.Max(0, outlierPermille);
        if (dimension <= 0 || blockSize <= 0)
        {
            throw new ArgumentException("dimension and block size must be positive");
        }

        Dimension = dimension;
        _blockSize = blockSize;
    }

    /// <inheritdoc />
    public string Spec => $"block:B={_blockSize},O={_outlierPermille}";

    /// <summary>Keys returned ahead of every block because they are far from the key mean.</summary>
    public int OutlierCount => _outliers.Count;

    /// <inheritdoc />
    public int Dimension { get; }

    /// <inheritdoc />
    public int Count => _positions.Count;

    /// <summary>Blocks summarized (the last may be partial).</summary>
    public int BlockCount => (Count + _blockSize - 1) / _blockSize;

    /// <inheritdoc />
    public long MemoryBytes => (_min.Capacity + _max.Capacity + _sum.Capacity + _mean.Length) * (long)sizeof(float) + _positions.Capacity * (long)sizeof(long) + _outliers.Capacity * 2L * sizeof(int);

    /// <summary>The mean key of block <paramref name="block"/> (its centroid), for plans that rank by it.</summary>
    public float[] MeanKey(int block)
    {
        int rows = Math.Min(_blockSize, Count - block * _blockSize);
        var mean = new float[Dimension];
        TensorPrimitives.Multiply(CollectionsMarshal.AsSpan(_sum).Slice(block * Dimension, Dimension), 1f / rows, mean);
        return mean;
    }

    /// <inheritdoc />
    public void Build(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        _min.Clear();
        _max.Clear();
        _sum.Clear();
        _positions.Clear();
        _outliers.Clear();
        _outlierRows.Clear();
        _mean = [];
        Extend(keys, positions);
    }

    /// <inheritdoc />
    public void Extend(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        KeyRows.CheckShape(keys, positions, Dimension);
        int d = Dimension;
        FindOutliers(keys, positions.Length);
        for (int i = 0; i < positions.Length; i++)
        {
            int row = Count;
            ReadOnlySpan<float> k = keys.Slice(i * d, d);
            if (row % _blockSize == 0)
            {
                // A new block starts: its summary is this key.
                AddRange(_min, k);
                AddRange(_max, k);
                AddRange(_sum, k);
            }
            else
            {
                int b = row / _blockSize;
                Span<float> min = CollectionsMarshal.AsSpan(_min).Slice(b * d, d);
                Span<float> max = CollectionsMarshal.AsSpan(_max).Slice(b * d, d);
                Span<float> sum = CollectionsMarshal.AsSpan(_sum).Slice(b * d, d);
                TensorPrimitives.Min(min, k, min);
                TensorPrimitives.Max(max, k, max);
                TensorPrimitives.Add(sum, k, sum);
            }

            _positions.Add(positions[i]);
        }
    }

    /// <inheritdoc />
    public int Candidates(ReadOnlySpan<float> query, in SearchParameters parameters, Span<long> positions, out SearchStats stats)
    {
        Span<int> count = stackalloc int[1];
        CandidatesForRows(query, 1, parameters, positions, count, out stats);
        return count[0];
    }

    /// <inheritdoc />
    public void CandidatesForRows(ReadOnlySpan<float> queries, int rows, in SearchParameters parameters, Span<long> positions, Span<int> counts, out SearchStats stats)
    {
        int d = Dimension;
        if (rows <= 0 || queries.Length != rows * d || counts.Length < rows)
        {
            throw new ArgumentException($"queries must be [rows ≥ 1, {d}] and counts hold one count per row");
        }

        int blocks = BlockCount;
        int stride = positions.Length / rows;
        int budget = Math.Min(parameters.Budget, stride);
        counts[..rows].Clear();
        if (blocks == 0 || budget <= 0)
        {
            stats = default;
            return;
        }

        float[] boundsArray = ArrayPool<float>.Shared.Rent(rows * blocks);
        int[] order = ArrayPool<int>.Shared.Rent(blocks);
        try
        {
            // One pass over the summaries for every row: each block's min and max are read once.
            BoxBoundKernel.Bounds(queries, rows, CollectionsMarshal.AsSpan(_min), CollectionsMarshal.AsSpan(_max), blocks, boundsArray);
            ReadOnlySpan<long> all = CollectionsMarshal.AsSpan(_positions);
            for (int r = 0; r < rows; r++)
            {
                Span<long> mine = positions.Slice(r * stride, stride);
                int written = 0;
                foreach (int row in _outliers)
                {
                    if (written < budget)
                    {
                        mine[written++] = all[row];
                    }
                }

                int wanted = Math.Min(blocks, (budget - written + _blockSize - 1) / _blockSize + 1);
                int ranked = TopKSelector.Select(boundsArray.AsSpan(r * blocks, blocks), wanted, order.AsSpan(0, blocks));
                for (int i = 0; i < ranked && written < budget; i++)
                {
                    int first = order[i] * _blockSize;
                    int last = Math.Min(Count, first + _blockSize);
                    for (int k = first; k < last && written < budget; k++)
                    {
                        if (_outlierRows.Count == 0 || !_outlierRows.Contains(k))
                        {
                            mine[written++] = all[k];
                        }
                    }
                }

                counts[r] = written;
            }

            stats = new SearchStats(0, 2L * blocks, 0);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(boundsArray);
            ArrayPool<int>.Shared.Return(order);
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Exact by construction: a block's bound is at least every score in it, so a key at or above the threshold
    /// lies in a block whose bound is too (outlier keys included: their blocks' min/max cover them).
    /// </remarks>
    public int AtLeast(ReadOnlySpan<float> query, float threshold, Span<long> positions, out int total, out SearchStats stats)
    {
        CheckQuery(query);
        int blocks = BlockCount;
        float[] bounds = ArrayPool<float>.Shared.Rent(Math.Max(1, blocks));
        try
        {
            BoxBoundKernel.Bounds(query, 1, CollectionsMarshal.AsSpan(_min), CollectionsMarshal.AsSpan(_max), blocks, bounds);
            ReadOnlySpan<long> all = CollectionsMarshal.AsSpan(_positions);
            int written = 0;
            total = 0;
            for (int b = 0; b < blocks; b++)
            {
                if (bounds[b] < threshold)
                {
                    continue;
                }

                int first = b * _blockSize;
                int last = Math.Min(Count, first + _blockSize);
                for (int r = first; r < last; r++)
                {
                    total++;
                    if (written < positions.Length)
                    {
                        positions[written++] = all[r];
                    }
                }
            }

            stats = new SearchStats(0, 2L * blocks, 0);
            return written;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(bounds);
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// One <see cref="BoxBoundKernel"/> pass bounds every block for every row (each block's min and max are read
    /// once); a block qualifies when some row's bound reaches that row's threshold, and its keys are written once.
    /// </remarks>
    public int AtLeastForRows(ReadOnlySpan<float> queries, int rows, ReadOnlySpan<float> thresholds, Span<long> positions, out int total, out SearchStats stats)
    {
        int d = Dimension;
        if (rows <= 0 || queries.Length != rows * d || thresholds.Length < rows)
        {
            throw new ArgumentException($"queries must be [rows ≥ 1, {d}] and thresholds hold one threshold per row");
        }

        int blocks = BlockCount;
        float[] bounds = ArrayPool<float>.Shared.Rent(Math.Max(1, rows * blocks));
        try
        {
            BoxBoundKernel.Bounds(queries, rows, CollectionsMarshal.AsSpan(_min), CollectionsMarshal.AsSpan(_max), blocks, bounds);
            ReadOnlySpan<long> all = CollectionsMarshal.AsSpan(_positions);
            int written = 0;
            total = 0;
            for (int b = 0; b < blocks; b++)
            {
                bool reached = false;
                for (int r = 0; r < rows && !reached; r++)
                {
                    reached = bounds[(r * blocks) + b] >= thresholds[r];
                }

                if (!reached)
                {
                    continue;
                }

                int first = b * _blockSize;
                int last = Math.Min(Count, first + _blockSize);
                for (int k = first; k < last; k++)
                {
                    total++;
                    if (written < positions.Length)
                    {
                        positions[written++] = all[k];
                    }
                }
            }

            stats = new SearchStats(0, 2L * blocks, 0);
            return written;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(bounds);
        }
    }

    /// <inheritdoc />
    public void Save(Stream stream)
    {
        using BinaryWriter w = IndexFormat.Writer(stream);
        IndexFormat.WriteHeader(w, Spec, Dimension);
        IndexFormat.WriteArray<float>(w, CollectionsMarshal.AsSpan(_min));
        IndexFormat.WriteArray<float>(w, CollectionsMarshal.AsSpan(_max));
        IndexFormat.WriteArray<float>(w, CollectionsMarshal.AsSpan(_sum));
        IndexFormat.WriteArray<long>(w, CollectionsMarshal.AsSpan(_positions));
        IndexFormat.WriteArray<int>(w, CollectionsMarshal.AsSpan(_outliers));
        IndexFormat.WriteArray<float>(w, _mean);
        w.Write(_spread);
    }

    /// <summary>Reads the payload written by <see cref="Save"/> after the header.</summary>
    void IIndexPayload.LoadPayload(BinaryReader r)
    {
        _min.Clear();
        _min.AddRange(IndexFormat.ReadArray<float>(r));
        _max.Clear();
        _max.AddRange(IndexFormat.ReadArray<float>(r));
        _sum.Clear();
        _sum.AddRange(IndexFormat.ReadArray<float>(r));
        _positions.Clear();
        _positions.AddRange(IndexFormat.ReadArray<long>(r));
        _outliers.Clear();
        _outliers.AddRange(IndexFormat.ReadArray<int>(r));
        _outlierRows.Clear();
        _outlierRows.UnionWith(_outliers);
        _mean = IndexFormat.ReadArray<float>(r);
        _spread = r.ReadSingle();
        if (_min.Count != BlockCount * Dimension || _max.Count != _min.Count || _sum.Count != _min.Count)
        {
            throw new InvalidDataException("block index stream: summaries do not match the row count");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    /// <summary>Flags the rows of a new batch (rows Count..) far from the key mean (<see cref="OutlierKeys.FarRows"/>).</summary>
    private void FindOutliers(ReadOnlySpan<float> keys, int n)
    {
        foreach (int row in OutlierKeys.FarRows(keys, n, Dimension, ref _mean, ref _spread, _outliers.Count, Count, _outlierPermille))
        {
            _outliers.Add(Count + row);
            _outlierRows.Add(Count + row);
        }
    }

    private void CheckQuery(ReadOnlySpan<float> query)
    {
        if (query.Length != Dimension)
        {
            throw new ArgumentException($"query must have {Dimension} dimensions, got {query.Length}", nameof(query));
        }
    }

    private static void AddRange(List<float> list, ReadOnlySpan<float> values)
    {
        foreach (float v in values)
        {
            list.Add(v);
        }
    }
}

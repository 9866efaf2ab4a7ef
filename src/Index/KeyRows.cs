using KvDb.Kernels;

namespace KvDb.Index;

/// <summary>
/// The bf16 copy of indexed keys and their positions that families scoring keys exactly keep: row i of
/// <see cref="Keys"/> (raw bf16 bits) is the key at <see cref="Positions"/>[i]. bf16 rather than f32 so the
/// copy costs no more than the store's bf16 keys: for bf16 models (what the store usually holds) it is
/// exact, and for f32 models it only ranks candidates, since plans attend the store's exact rows. Grows by
/// doubling; readers see a consistent prefix because rows are only ever appended.
/// </summary>
internal sealed class KeyRows
{
    private ushort[] _keys = [];
    private long[] _positions = [];

    public KeyRows(int dimension)
    {
        Dimension = dimension;
    }

    public int Dimension { get; }

    public int Count { get; private set; }

    /// <summary>The rows as raw bf16 bits, [Count, Dimension].</summary>
    public ReadOnlySpan<ushort> Keys => _keys.AsSpan(0, Count * Dimension);

    public ReadOnlySpan<long> Positions => _positions.AsSpan(0, Count);

    public long MemoryBytes => (long)_keys.Length * sizeof(ushort) + (long)_positions.Length * sizeof(long);

    /// <summary>Widens row <paramref name="i"/> into <paramref name="destination"/> and returns that row's span of it.</summary>
    public ReadOnlySpan<float> Row(int i, Span<float> destination)
    {
        Span<float> row = destination[..Dimension];
        ElementConversion.BFloat16ToSingle(_keys.AsSpan(i * Dimension, Dimension), row);
        return row;
    }

    /// <summary>
    /// All rows widened to a new f32 array, [Count, Dimension]: for builds (k-means, graph construction),
    /// which may take transient memory; searches score the bf16 rows directly.
    /// </summary>
    public float[] ToSingle()
    {
        var keys = new float[Count * Dimension];
        ElementConversion.BFloat16ToSingle(Keys, keys);
        return keys;
    }

    public void Clear() => Count = 0;

    public void Append(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions)
    {
        int n = positions.Length;
        if (keys.Length != (long)n * Dimension)
        {
            throw new ArgumentException($"keys must be [{n}, {Dimension}] floats to match {n} positions, got {keys.Length}");
        }

        int need = Count + n;
        if (need > _positions.Length)
        {
            int capacity = Math.Max(need, Math.Max(1024, _positions.Length * 2));
            Array.Resize(ref _positions, capacity);
            Array.Resize(ref _keys, capacity * Dimension);
        }

        ElementConversion.SingleToBFloat16(keys, _keys.AsSpan(Count * Dimension));
        positions.CopyTo(_positions.AsSpan(Count));
        Count = need;
    }

    public void Save(BinaryWriter w)
    {
        IndexFormat.WriteArray(w, Keys);
        IndexFormat.WriteArray(w, Positions);
    }

    public void Load(BinaryReader r)
    {
        ushort[] keys = IndexFormat.ReadArray<ushort>(r);
        long[] positions = IndexFormat.ReadArray<long>(r);
        if (keys.Length != (long)positions.Length * Dimension)
        {
            throw new InvalidDataException("index stream: key rows do not match positions");
        }

        _keys = keys;
        _positions = positions;
        Count = positions.Length;
    }

    /// <summary>Row ids → positions, for a search that ranked row ids.</summary>
    public void ToPositions(ReadOnlySpan<int> rows, Span<long> destination)
    {
        for (int i = 0; i < rows.Length; i++)
        {
            destination[i] = _positions[rows[i]];
        }
    }

    /// <summary>Throws unless keys are [positions.Length, dimension].</summary>
    public static void CheckShape(ReadOnlySpan<float> keys, ReadOnlySpan<long> positions, int dimension)
    {
        if (keys.Length != (long)positions.Length * dimension)
        {
            throw new ArgumentException($"keys must be [{positions.Length}, {dimension}] floats, got {keys.Length}");
        }
    }
}

namespace KvDb.Kernels;

/// <summary>
/// Copies one KV head's key (or value) rows out of a layer's blocks as f32 rows in position order: the
/// input an index build needs. Widening happens per row, so any dtype the store holds works.
/// </summary>
public static unsafe class KvBlockReader
{
    /// <summary>Rows of <paramref name="kvHead"/> across <paramref name="blocks"/> (sum of their Tokens).</summary>
    public static long CountRows(ReadOnlySpan<KvBlockRef> blocks)
    {
        long rows = 0;
        foreach (ref readonly KvBlockRef b in blocks)
        {
            rows += b.Tokens;
        }

        return rows;
    }

    /// <summary>
    /// Writes the head's rows f32 [rows, HeadDim] into <paramref name="destination"/> and their sequence
    /// positions into <paramref name="positions"/>; returns the row count.
    /// </summary>
    public static int ReadHeadRows(in AttentionGeometry geometry, ReadOnlySpan<KvBlockRef> blocks, int kvHead, bool values, Span<float> destination, Span<long> positions)
    {
        geometry.Validate();
        if ((uint)kvHead >= (uint)geometry.NumKvHeads)
        {
            throw new ArgumentOutOfRangeException(nameof(kvHead), kvHead, $"KV head must be in [0, {geometry.NumKvHeads})");
        }

        int d = geometry.HeadDim;
        int rowBytes = geometry.RowBytes;
        long headOffset = kvHead * geometry.HeadStrideBytes;
        int row = 0;
        foreach (ref readonly KvBlockRef b in blocks)
        {
            if (row + b.Tokens > positions.Length || (long)(row + b.Tokens) * d > destination.Length)
            {
                throw new ArgumentException("destination or positions are too short for the blocks' rows");
            }

            nint region = (values ? b.Values : b.Keys) + (nint)headOffset;
            var source = new ReadOnlySpan<byte>((void*)region, b.Tokens * rowBytes);
            ElementConversion.ToSingle(geometry.DType, source, destination.Slice(row * d, b.Tokens * d));
            for (int t = 0; t < b.Tokens; t++)
            {
                positions[row + t] = b.Start + t;
            }

            row += b.Tokens;
        }

        return row;
    }

    /// <summary>
    /// Gathers the head's rows at <paramref name="positions"/> (ascending) as f32 [positions.Length, HeadDim]
    /// into <paramref name="destination"/>; throws when a position is in no block.
    /// </summary>
    public static void ReadHeadRowsAt(in AttentionGeometry geometry, ReadOnlySpan<KvBlockRef> blocks, int kvHead, bool values, ReadOnlySpan<long> positions, Span<float> destination) =>
        ReadRowsAt(geometry, blocks, kvHead, positions, values ? Span<float>.Empty : destination, values ? destination : Span<float>.Empty, values ? RowSide.Values : RowSide.Keys);

    /// <summary>
    /// Gathers both the key and the value rows of the head at <paramref name="positions"/> (ascending) as f32
    /// [positions.Length, HeadDim] each. One pass over both: twice the misses in flight of two passes, so about half
    /// the time for scattered rows, whose cost is the memory's latency.
    /// </summary>
    public static void ReadHeadRowPairsAt(in AttentionGeometry geometry, ReadOnlySpan<KvBlockRef> blocks, int kvHead, ReadOnlySpan<long> positions, Span<float> keys, Span<float> values) =>
        ReadRowsAt(geometry, blocks, kvHead, positions, keys, values, RowSide.Both);

    private enum RowSide
    {
        Keys,
        Values,
        Both,
    }

    private static void ReadRowsAt(in AttentionGeometry geometry, ReadOnlySpan<KvBlockRef> blocks, int kvHead, ReadOnlySpan<long> positions, Span<float> keys, Span<float> values, RowSide side)
    {
        geometry.Validate();
        int d = geometry.HeadDim;
        long needed = (long)positions.Length * d;
        bool readKeys = side != RowSide.Values;
        bool readValues = side != RowSide.Keys;
        if ((uint)kvHead >= (uint)geometry.NumKvHeads || (readKeys && keys.Length < needed) || (readValues && values.Length < needed))
        {
            throw new ArgumentException("KV head out of range or destination shorter than positions × HeadDim");
        }

        int rowBytes = geometry.RowBytes;
        long headOffset = kvHead * geometry.HeadStrideBytes;
        // Addresses first (one pass over the blocks), then the reads with the next rows already requested.
        const int Batch = 64;
        byte** keyRows = stackalloc byte*[Batch];
        byte** valueRows = stackalloc byte*[Batch];
        int block = 0;
        for (int start = 0; start < positions.Length; start += Batch)
        {
            int count = Math.Min(Batch, positions.Length - start);
            for (int j = 0; j < count; j++)
            {
                long p = positions[start + j];
                if (block >= blocks.Length || p < blocks[block].Start)
                {
                    block = BlockAtOrAfter(blocks, p);
                }

                while (block < blocks.Length && p >= blocks[block].Start + blocks[block].Tokens)
                {
                    block++;
                }

                if (block >= blocks.Length || p < blocks[block].Start)
                {
                    throw new ArgumentOutOfRangeException(nameof(positions), p, "position is not stored in any block of the layer");
                }

                KvBlockRef b = blocks[block];
                nint offset = (nint)(headOffset + ((p - b.Start) * rowBytes));
                keyRows[j] = (byte*)(b.Keys + offset);
                valueRows[j] = (byte*)(b.Values + offset);
                if (j < RowPrefetch.Distance)
                {
                    Prefetch(keyRows[j], valueRows[j], rowBytes, readKeys, readValues);
                }
            }

            for (int j = 0; j < count; j++)
            {
                if (j + RowPrefetch.Distance < count)
                {
                    Prefetch(keyRows[j + RowPrefetch.Distance], valueRows[j + RowPrefetch.Distance], rowBytes, readKeys, readValues);
                }

                if (readKeys)
                {
                    ElementConversion.ToSingle(geometry.DType, new ReadOnlySpan<byte>(keyRows[j], rowBytes), keys.Slice((start + j) * d, d));
                }

                if (readValues)
                {
                    ElementConversion.ToSingle(geometry.DType, new ReadOnlySpan<byte>(valueRows[j], rowBytes), values.Slice((start + j) * d, d));
                }
            }
        }
    }

    private static void Prefetch(byte* key, byte* value, int rowBytes, bool keys, bool values)
    {
        if (keys)
        {
            RowPrefetch.Row(key, rowBytes);
        }

        if (values)
        {
            RowPrefetch.Row(value, rowBytes);
        }
    }

    /// <summary>Index of the first block that ends after <paramref name="position"/> (binary search: blocks are ascending).</summary>
    private static int BlockAtOrAfter(ReadOnlySpan<KvBlockRef> blocks, long position)
    {
        int lo = 0;
        int hi = blocks.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (blocks[mid].Start + blocks[mid].Tokens <= position)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }
}

namespace KvDb.Kernels;

/// <summary>
/// A run of consecutive rows inside one block: the unit a sparse selection is read in, so gathered
/// attention streams contiguous rows through the same fused loops as exact attention.
/// </summary>
public readonly record struct KvRowRun(int Block, int First, int Count)
{
    /// <summary>
    /// Appends the runs covering every stored row of <paramref name="blocks"/> outside [<paramref name="excludeStart"/>,
    /// <paramref name="excludeEnd"/>) to <paramref name="destination"/>: a dense head as runs, without a position list.
    /// </summary>
    public static void AppendAllExcept(ReadOnlySpan<KvBlockRef> blocks, long excludeStart, long excludeEnd, List<KvRowRun> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        for (int b = 0; b < blocks.Length; b++)
        {
            long start = blocks[b].Start;
            long end = start + blocks[b].Tokens;
            if (excludeEnd <= excludeStart || excludeEnd <= start || excludeStart >= end)
            {
                if (end > start)
                {
                    destination.Add(new KvRowRun(b, 0, blocks[b].Tokens));
                }

                continue;
            }

            if (excludeStart > start)
            {
                destination.Add(new KvRowRun(b, 0, (int)(excludeStart - start)));
            }

            if (excludeEnd < end)
            {
                destination.Add(new KvRowRun(b, (int)(excludeEnd - start), (int)(end - excludeEnd)));
            }
        }
    }

    /// <summary>
    /// Appends the runs covering ascending, distinct <paramref name="positions"/> of a layer to
    /// <paramref name="destination"/>; returns false (appending nothing) when the positions are not ascending
    /// or one is not stored in <paramref name="blocks"/>.
    /// </summary>
    public static bool TryFromPositions(ReadOnlySpan<KvBlockRef> blocks, ReadOnlySpan<long> positions, List<KvRowRun> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        int mark = destination.Count;
        int block = 0;
        long previous = long.MinValue;
        int i = 0;
        while (i < positions.Length)
        {
            long pos = positions[i];
            if (pos <= previous)
            {
                destination.RemoveRange(mark, destination.Count - mark);
                return false;
            }

            // Positions ascend, so the block index only moves forward.
            while (block < blocks.Length && pos >= blocks[block].Start + blocks[block].Tokens)
            {
                block++;
            }

            if (block == blocks.Length || pos < blocks[block].Start)
            {
                destination.RemoveRange(mark, destination.Count - mark);
                return false;
            }

            KvBlockRef b = blocks[block];
            int first = (int)(pos - b.Start);
            int count = 1;
            while (i + count < positions.Length && positions[i + count] == pos + count && first + count < b.Tokens)
            {
                count++;
            }

            destination.Add(new KvRowRun(block, first, count));
            previous = pos + count - 1;
            i += count;
        }

        return true;
    }
}

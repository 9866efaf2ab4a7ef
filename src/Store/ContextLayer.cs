namespace KvDb.Store;

/// <summary>One layer of a context: full blocks in position order and at most one partial tail block last.</summary>
internal sealed class ContextLayer
{
    public List<KvBlock> Blocks { get; } = [];

    public long Length { get; set; }

    /// <summary>Drops rows at and after <paramref name="length"/>; a block cut in the middle is replaced by a copy so pinned readers and sharers keep their rows.</summary>
    public void Truncate(long length, int blockSize, BlockManager manager)
    {
        if (length >= Length)
        {
            return;
        }

        int keepBlocks = (int)((length + blockSize - 1) / blockSize);
        for (int i = Blocks.Count - 1; i >= keepBlocks; i--)
        {
            Blocks[i].Release();
            Blocks.RemoveAt(i);
        }

        int rowsInLast = (int)(length - (long)(keepBlocks - 1) * blockSize);
        if (keepBlocks > 0 && rowsInLast < Blocks[keepBlocks - 1].Count)
        {
            KvBlock old = Blocks[keepBlocks - 1];
            manager.Pin(old);
            try
            {
                Blocks[keepBlocks - 1] = old.CopyPrefix(rowsInLast);
            }
            finally
            {
                manager.Unpin(old);
            }

            old.Release();
        }

        Length = length;
    }

    public void ReleaseAll()
    {
        foreach (KvBlock b in Blocks)
        {
            b.Release();
        }

        Blocks.Clear();
        Length = 0;
    }
}

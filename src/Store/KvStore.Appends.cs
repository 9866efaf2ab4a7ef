using KvDb.Store.Durability;

namespace KvDb.Store;

// Append transactions: one open AppendKv stream per context, which reaches the store only through IAppendHost.
public partial class KvStore : IAppendHost
{
    private long _nextTxnId = 1;
    private long _dedupeHits;

    /// <inheritdoc />
    public IAppendTransaction BeginAppend(string contextId) =>
        BeginAppendCore(Find(contextId), Interlocked.Increment(ref _nextTxnId));

    private AppendTransaction BeginAppendCore(KvContext c, long txnId)
    {
        lock (c.Gate)
        {
            if (c.Deleted)
            {
                throw KvDbException.NotFound($"context \"{c.Id}\" was deleted");
            }

            if (c.OpenTransaction is not null)
            {
                throw new KvDbException(KvDbErrorCode.FailedPrecondition, $"context \"{c.Id}\" already has an open AppendKv stream; send all layers of a context through one stream at a time");
            }

            var tx = new AppendTransaction(this, c, txnId, logged: Logging);
            c.OpenTransaction = tx;
            return tx;
        }
    }

    Lock IAppendHost.MetadataLock => _opLock;

    KvBlock IAppendHost.AllocateBlock(ModelSchema model, int layer, string owner) => Blocks.Allocate(model, layer, owner);

    KvBlock? IAppendHost.AcquireIdentical(BlockAddress address, ulong checksum)
    {
        KvBlock? same = _directory.AcquireSame(address, checksum);
        if (same is not null)
        {
            Interlocked.Increment(ref _dedupeHits);
        }

        return same;
    }

    void IAppendHost.MarkFull(KvBlock block) => Blocks.MarkFull(block);

    void IAppendHost.Truncate(ContextLayer layer, long length, int blockSize) => layer.Truncate(length, blockSize, Blocks);

    void IAppendHost.PublishCommitted(KvContext context, ReadOnlySpan<long> startLengths)
    {
        int b = context.Model.BlockSize;
        for (int layer = 0; layer < context.Layers.Length; layer++)
        {
            ContextLayer l = context.Layers[layer];
            for (long i = startLengths[layer] / b; i < l.Length / b; i++)
            {
                KvBlock block = l.Blocks[(int)i];
                if (!block.Published && block.Address is not null)
                {
                    _directory.Publish(block);
                }
            }

            context.CommittedLengths[layer] = l.Length;
        }

        RegisterCommitted(context);
        if (context.Pinned)
        {
            PinNewBlocks(context);
        }
    }

    long IAppendHost.Log(WalRecord record) => Log(record);

    long IAppendHost.LogChunk(long transaction, string contextId, int layer, long start, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        if (Logging)
        {
            _diskSpace?.EnsureRoom(keys.Length + values.Length + (tokenIds.Length * sizeof(int)), "this append");
        }

        return LogRecord(WalRecordType.Chunk, WalCodec.EncodeChunk(transaction, contextId, layer, start, tokenIds, keys, values));
    }

    void IAppendHost.WaitDurable(long address) => WaitDurable(address);

    Task IAppendHost.WaitDurableAsync(long address) => WaitDurableAsync(address);
}

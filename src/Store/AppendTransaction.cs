using KvDb.Kernels;
using KvDb.Store.Durability;

namespace KvDb.Store;

/// <summary>
/// One AppendKv stream against a <see cref="KvStore"/>, which it reaches only through <see cref="IAppendHost"/>.
/// Each chunk is applied under the context's gate and then written to the log as Chunk records of this
/// transaction; a full block is sealed (checksummed, addressed and deduplicated against the directory) as soon
/// as it fills. Commit logs a Commit record, publishes the new full blocks and waits until the log is durable;
/// Dispose without commit rolls back and logs an Abort record.
/// </summary>
internal sealed class AppendTransaction : IAppendTransaction
{
    private readonly IAppendHost _store;
    private readonly KvContext _context;
    private readonly long[] _startLengths;
    private readonly bool _logged;
    private bool _done;

    public AppendTransaction(IAppendHost store, KvContext context, long id, bool logged)
    {
        _store = store;
        _context = context;
        Id = id;
        _logged = logged;
        _startLengths = new long[context.Layers.Length];
        for (int i = 0; i < _startLengths.Length; i++)
        {
            _startLengths[i] = context.Layers[i].Length;
        }
    }

    /// <summary>Log identity of the transaction.</summary>
    public long Id { get; }

    /// <summary>Log address of the first Chunk record, or −1.</summary>
    public long FirstAddress { get; private set; } = -1;

    /// <summary>Set when a chunk failed after changing state; the transaction can then only roll back.</summary>
    public bool Failed { get; set; }

    public void Append(int layer, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        ObjectDisposedException.ThrowIf(_done, this);
        if (Failed)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "an earlier chunk of this AppendKv stream failed, so it can only be rolled back; open a new stream and send the chunks again");
        }

        ModelSchema m = _context.Model;
        m.CheckLayer(layer);
        int n = tokenIds.Length;
        long expected = (long)n * m.NumKvHeads * m.RowBytes;
        if (n == 0)
        {
            throw KvDbException.Invalid("append chunk has no tokens; send at least one token id with keys and values of shape [n, num_kv_heads, head_dim]");
        }

        if (keys.Length != expected || values.Length != expected)
        {
            throw KvDbException.Invalid($"keys and values must each hold {n} tokens × {m.NumKvHeads} kv heads × {m.HeadDim} dims of {KvDTypeInfo.Name(m.DType)} = {expected} bytes; got {keys.Length} and {values.Length}");
        }

        lock (_context.Gate)
        {
            if (_context.Deleted)
            {
                throw KvDbException.NotFound($"context \"{_context.Id}\" was deleted during the append");
            }

            ContextLayer l = _context.Layers[layer];
            long pos = l.Length;
            List<int> ids = _context.TokenIds;
            int overlap = (int)Math.Clamp(ids.Count - pos, 0, n);
            for (int i = 0; i < overlap; i++)
            {
                if (ids[(int)pos + i] != tokenIds[i])
                {
                    throw KvDbException.Invalid($"layer {layer}: token id at position {pos + i} is {tokenIds[i]} but another layer stored {ids[(int)pos + i]} there; every layer must receive the same token ids");
                }
            }

            _context.AddTokens(tokenIds[overlap..]);
            bool logging = false;
            try
            {
                int written = 0;
                while (written < n)
                {
                    KvBlock tail;
                    if (l.Blocks.Count == 0 || l.Blocks[^1].Count == m.BlockSize)
                    {
                        tail = _store.AllocateBlock(m, layer, BlockOwner.Of(_context.Namespace));
                        l.Blocks.Add(tail);
                    }
                    else
                    {
                        tail = l.Blocks[^1];
                    }

                    int take = Math.Min(n - written, tail.Capacity - tail.Count);
                    tail.AppendRows(keys, values, written, take);
                    written += take;
                    l.Length += take;
                    if (tail.IsFull)
                    {
                        Seal(l, l.Blocks.Count - 1, layer);
                    }
                }

                if (_logged)
                {
                    logging = true;
                    LogChunk(layer, pos, tokenIds, keys, values);
                }
            }
            catch
            {
                Failed = logging;
                _store.Truncate(l, pos, m.BlockSize);
                long maxLength = 0;
                foreach (ContextLayer other in _context.Layers)
                {
                    maxLength = Math.Max(maxLength, other.Length);
                }

                _context.TrimTokens(maxLength);
                throw;
            }
        }
    }

    public ContextInfo Commit()
    {
        (ContextInfo info, long address) = CommitCore();
        _store.WaitDurable(address);
        return info;
    }

    public async Task<ContextInfo> CommitAsync()
    {
        (ContextInfo info, long address) = CommitCore();
        await _store.WaitDurableAsync(address).ConfigureAwait(false);
        return info;
    }

    public void Dispose()
    {
        if (_done)
        {
            return;
        }

        lock (_context.Gate)
        {
            if (_done)
            {
                return;
            }

            _done = true;
            if (ReferenceEquals(_context.OpenTransaction, this))
            {
                _context.OpenTransaction = null;
            }

            if (_context.Deleted)
            {
                return;
            }

            long maxLength = 0;
            for (int i = 0; i < _startLengths.Length; i++)
            {
                _store.Truncate(_context.Layers[i], _startLengths[i], _context.Model.BlockSize);
                maxLength = Math.Max(maxLength, _context.Layers[i].Length);
            }

            _context.TrimTokens(maxLength);
            if (_logged && FirstAddress >= 0)
            {
                _store.Log(new AbortRecord(Id, _context.Id));
            }
        }
    }

    private (ContextInfo Info, long Address) CommitCore()
    {
        ObjectDisposedException.ThrowIf(_done, this);
        if (Failed)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "an earlier chunk of this AppendKv stream failed, so it cannot commit; open a new stream and send the chunks again");
        }

        lock (_store.MetadataLock)
        {
            lock (_context.Gate)
            {
                if (_context.Deleted)
                {
                    _done = true;
                    throw KvDbException.NotFound($"context \"{_context.Id}\" was deleted during the append");
                }

                long address = _logged && FirstAddress >= 0 ? _store.Log(new CommitRecord(Id, _context.Id)) : -1;
                _store.PublishCommitted(_context, _startLengths);
                _done = true;
                _context.OpenTransaction = null;
                return (_context.Info(), address);
            }
        }
    }

    /// <summary>Checksums and addresses a block that just filled; reuses the directory's identical block when there is one.</summary>
    private void Seal(ContextLayer l, int index, int layer)
    {
        KvBlock block = l.Blocks[index];
        ulong checksum = block.ComputeChecksum();
        var address = new BlockAddress(_context.Chain[index], layer);
        KvBlock? same = _store.AcquireIdentical(address, checksum);
        if (same is not null)
        {
            l.Blocks[index] = same;
            block.Release();
            return;
        }

        block.Address = address;
        block.Checksum = checksum;
        _store.MarkFull(block);
    }

    /// <summary>Writes the chunk as Chunk records no larger than a log page allows.</summary>
    private void LogChunk(int layer, long pos, ReadOnlySpan<int> ids, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        int tokenBytes = _context.Model.NumKvHeads * _context.Model.RowBytes;
        int perRecord = Math.Max(1, (FasterLogFiles.MaxRecordBytes - 1024 - (2 * _context.Id.Length)) / ((2 * tokenBytes) + 4));
        for (int off = 0; off < ids.Length; off += perRecord)
        {
            int count = Math.Min(perRecord, ids.Length - off);
            int o = off;
            long address = _store.LogChunk(Id, _context.Id, layer, pos + o, ids.Slice(o, count), keys.Slice(o * tokenBytes, count * tokenBytes), values.Slice(o * tokenBytes, count * tokenBytes));
            if (FirstAddress < 0)
            {
                FirstAddress = address;
            }
        }
    }
}

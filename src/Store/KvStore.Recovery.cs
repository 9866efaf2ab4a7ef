using KvDb.Store.Durability;

namespace KvDb.Store;

// Recovery: load the newest readable checkpoint, then replay the decoded write-ahead log records after it.
public partial class KvStore
{
    private void Recover(string dir, BlockManager manager)
    {
        CheckpointImage? image = CheckpointFile.Load(dir, out int badCheckpoints, out string? problem);
        for (int i = 0; i < badCheckpoints; i++)
        {
            ReportCorrupt(problem ?? "a checkpoint file is corrupt");
        }

        long cut = 0;
        long from = _wal!.BeginAddress;
        HashSet<long> open = [];
        if (image is not null)
        {
            LoadImage(image, manager);
            cut = image.Cut;
            from = image.ReplayFrom;
            open = image.OpenTransactions;
            _nextTxnId = Math.Max(_nextTxnId, image.NextTransactionId);
        }

        if (from < _wal.BeginAddress)
        {
            ReportCorrupt($"the write-ahead log starts at {_wal.BeginAddress} but recovery needs it from {from}; operations in between are lost");
            from = _wal.BeginAddress;
        }

        var replay = new Replay(this, cut, open);
        if (!_wal.Scan(from, replay.Visit))
        {
            ReportCorrupt($"the write-ahead log's framing is broken after address {replay.LastAddress}; records after it cannot be read and are lost");
        }

        replay.Finish();
    }

    private void LoadImage(CheckpointImage image, BlockManager manager)
    {
        foreach (ModelSchema m in image.Models)
        {
            _models.Restore(m);
        }

        var byHandle = new Dictionary<long, KvBlock>();
        foreach (ContextImage ci in image.Contexts)
        {
            if (!_models.TryGet(ci.Model, out ModelSchema? schema) || ci.Layers.Length != schema.NumLayers)
            {
                ReportCorrupt($"checkpointed context \"{ci.Id}\" names model \"{ci.Model}\" which is missing or has another layer count; the context is dropped");
                continue;
            }

            var c = new KvContext(ci.Id, schema, ci.Namespace, ci.CreatedUnixMs, ci.ExpiresAtUnixMs);
            c.AddTokens(ci.TokenIds);
            int b = schema.BlockSize;
            int tokenBytes = schema.NumKvHeads * schema.RowBytes;
            for (int layer = 0; layer < schema.NumLayers; layer++)
            {
                LayerImage li = ci.Layers[layer];
                int rows = (int)(li.Length % b);
                if (li.Stored.Count != li.Length / b || li.Length > c.TokenIds.Count || li.TailKeys.Length != rows * tokenBytes || li.TailValues.Length != rows * tokenBytes)
                {
                    ReportCorrupt($"checkpointed context \"{ci.Id}\" layer {layer} is inconsistent; the layer is left empty");
                    continue;
                }

                ContextLayer l = c.Layers[layer];
                for (int i = 0; i < li.Stored.Count; i++)
                {
                    (ulong checksum, long handle) = li.Stored[i];
                    if (byHandle.TryGetValue(handle, out KvBlock? shared))
                    {
                        shared.AddRef();
                        l.Blocks.Add(shared);
                        continue;
                    }

                    KvBlock block = manager.AdoptSpilled(schema, layer, new BlockAddress(c.Chain[i], layer), checksum, handle, BlockOwner.Of(ci.Namespace));
                    _directory.Publish(block);
                    byHandle[handle] = block;
                    l.Blocks.Add(block);
                }

                if (rows > 0)
                {
                    KvBlock tail = manager.Allocate(schema, layer, BlockOwner.Of(ci.Namespace));
                    tail.AppendRows(li.TailKeys, li.TailValues, 0, rows);
                    l.Blocks.Add(tail);
                }

                l.Length = li.Length;
                c.CommittedLengths[layer] = li.Length;
            }

            _contexts[c.Id] = c;
            _directory.Register(c.Root, c);
            RegisterCommitted(c);
        }

        foreach (ContextImage ci in image.Contexts)
        {
            if (ci.Pinned)
            {
                ApplyContextSettings(ci.Id, ci.ExpiresAtUnixMs, pinned: true, ci.PinTier);
            }
        }
    }

    /// <summary>Applies decoded log records after a checkpoint, rebuilding every committed transaction.</summary>
    private sealed class Replay
    {
        private readonly KvStore _store;
        private readonly long _cut;
        private readonly HashSet<long> _open;
        private readonly Dictionary<long, AppendTransaction> _txns = [];

        public Replay(KvStore store, long cut, HashSet<long> open)
        {
            _store = store;
            _cut = cut;
            _open = open;
        }

        public long LastAddress { get; private set; }

        public void Visit(long address, ReadOnlyMemory<byte> bytes)
        {
            LastAddress = address;
            WalRecord? record = null;
            try
            {
                if (!WalCodec.TryDecode(bytes, out record))
                {
                    _store.ReportCorrupt($"write-ahead log record at {address} failed its checksum and was skipped");
                    return;
                }

                Apply(address, record);
            }
            catch (InvalidDataException e)
            {
                _store.ReportCorrupt($"write-ahead log record at {address} is malformed ({e.Message}) and was skipped");
            }
            catch (KvDbException e)
            {
                _store.ReportCorrupt($"write-ahead log record at {address} ({record?.Type}) could not be applied: {e.Message}");
            }
        }

        public void Finish()
        {
            // Streams without a Commit record were never acknowledged: roll them back.
            foreach (AppendTransaction tx in _txns.Values)
            {
                tx.Dispose();
            }

            _txns.Clear();
        }

        private void Apply(long address, WalRecord record)
        {
            // Records before the checkpoint's cut are in the checkpoint already, except the chunks and ends of
            // transactions that were open at the cut.
            bool beforeCut = address < _cut;
            switch (record)
            {
                case ModelRecord m:
                    if (!beforeCut)
                    {
                        _store.CreateModel(m.Model);
                    }

                    break;
                case ContextCreateRecord c:
                    if (!beforeCut)
                    {
                        (_, _, long shared) = _store.CreateCore(_store.GetModel(c.Model), c.Namespace, c.Id, c.SharedPrefix, c.CreatedUnixMs, c.ExpiresAtUnixMs);
                        if (shared != c.SharedPrefix.Length)
                        {
                            _store.ReportCorrupt($"context \"{c.Id}\" was created from a {c.SharedPrefix.Length}-token cached prefix but only {shared} tokens of it were recovered");
                        }
                    }

                    break;
                case ContextDeleteRecord d:
                    if (!beforeCut)
                    {
                        _store.DeleteContext(d.Id);
                    }

                    break;
                case ContextUpdateRecord u:
                    if (!beforeCut)
                    {
                        _store.ApplyContextSettings(u.Id, u.ExpiresAtUnixMs, u.Pinned, u.PinTier);
                    }

                    break;
                case ContextForkRecord f:
                    if (!beforeCut)
                    {
                        _store.ForkCore(_store.Find(f.SourceId), f.Id, f.CreatedUnixMs);
                    }

                    break;
                case ChunkRecord chunk:
                    ApplyChunk(chunk, beforeCut);
                    break;
                case CommitRecord or AbortRecord:
                    End(record, beforeCut);
                    break;
                case CheckpointMarkerRecord:
                    break;
                default:
                    _store.ReportCorrupt($"write-ahead log record at {address} has unknown type {(int)record.Type} and was skipped");
                    break;
            }
        }

        private void End(WalRecord record, bool beforeCut)
        {
            long txn = record is CommitRecord commit ? commit.Transaction : ((AbortRecord)record).Transaction;
            if ((beforeCut && !_open.Contains(txn)) || !_txns.Remove(txn, out AppendTransaction? tx))
            {
                return;
            }

            if (record is AbortRecord)
            {
                tx.Dispose();
            }
            else if (tx.Failed)
            {
                tx.Dispose();
                _store.ReportCorrupt($"acknowledged append {txn} lost a chunk to corruption; its context keeps the state before that append");
            }
            else
            {
                tx.Commit();
            }
        }

        private void ApplyChunk(ChunkRecord chunk, bool beforeCut)
        {
            long txn = chunk.Transaction;
            if (beforeCut && !_open.Contains(txn))
            {
                return;
            }

            string contextId = chunk.ContextId;
            int layer = chunk.Layer;
            long start = chunk.Start;
            _store._nextTxnId = Math.Max(_store._nextTxnId, txn);
            if (!_txns.TryGetValue(txn, out AppendTransaction? tx))
            {
                KvContext c = _store.Find(contextId);
                if (c.OpenTransaction is AppendTransaction stale)
                {
                    stale.Dispose();
                    _txns.Remove(stale.Id);
                }

                tx = _store.BeginAppendCore(c, txn);
                _txns[txn] = tx;
            }

            if (tx.Failed)
            {
                return;
            }

            KvContext ctx = _store.Find(contextId);
            if (layer < 0 || layer >= ctx.Layers.Length || ctx.Layers[layer].Length != start)
            {
                tx.Failed = true;
                _store.ReportCorrupt($"append {txn} to context \"{contextId}\" has a gap at layer {layer} position {start} (an earlier record was lost)");
                return;
            }

            try
            {
                tx.Append(layer, chunk.TokenIds, chunk.Keys.Span, chunk.Values.Span);
            }
            catch (KvDbException e)
            {
                tx.Failed = true;
                _store.ReportCorrupt($"append {txn} to context \"{contextId}\" could not be replayed: {e.Message}");
            }
        }
    }
}

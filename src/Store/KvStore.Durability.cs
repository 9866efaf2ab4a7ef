using System.Diagnostics;
using System.Runtime.InteropServices;
using KvDb.Store.Durability;
using Microsoft.Extensions.Logging;

namespace KvDb.Store;

/// <summary>
/// Durability of <see cref="KvStore"/>: the write-ahead log, the disk block log, checkpoints and recovery
/// (checkpoint load, then log replay). See docs/storage.md for formats and guarantees.
/// </summary>
public partial class KvStore
{
    private readonly Lock _checkpointGate = new();
    private WriteAheadLog? _wal;
    private BlockLog? _blockLog;
    private long _corrupt;
    private bool _replaying;
    private long _lastCheckpointTail;
    private long _lastCheckpointTicks = Stopwatch.GetTimestamp();
    private long _previousReplayFrom = -1;
    private int _scrubPending;

    /// <summary>True when the store keeps a data directory.</summary>
    public bool Durable => _wal is not null;

    /// <summary>Problems found while opening the data directory (corrupt records, files moved aside), in order.</summary>
    public IReadOnlyList<string> RecoveryProblems => _recoveryProblems;

    /// <summary>How long opening the data directory took (checkpoint load plus log replay).</summary>
    public TimeSpan RecoveryTime { get; private set; }

    private readonly List<string> _recoveryProblems = [];

    private bool Logging => _wal is not null && !_replaying;

    /// <inheritdoc />
    public CheckpointResult Checkpoint()
    {
        if (_wal is null || Options.DataDirectory is not string dir)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "this server keeps everything in memory, so there is nothing to checkpoint; start it with --data DIR for persistence");
        }

        lock (_checkpointGate)
        {
            long started = Stopwatch.GetTimestamp();
            var image = new CheckpointImage();
            var held = new List<KvBlock>();
            try
            {
                lock (_opLock)
                {
                    using (RecordWriter marker = new())
                    {
                        image.Cut = _wal.Append(marker.Finish(WalRecordType.CheckpointMarker));
                    }

                    image.ReplayFrom = image.Cut;
                    image.NextTransactionId = Interlocked.Read(ref _nextTxnId) + 1;
                    image.Models.AddRange(_models.Values);
                    foreach (KvContext c in _contexts.Values)
                    {
                        lock (c.Gate)
                        {
                            image.Contexts.Add(Capture(c, image, held));
                        }
                    }
                }

                Blocks.EnsureSpilled(held);
                CheckpointFile.Write(dir, image);
                long before = _wal.BeginAddress;
                if (_previousReplayFrom > 0)
                {
                    // The log keeps what the previous checkpoint needs, so a corrupt latest checkpoint can fall back to it.
                    _wal.TruncateUntil(_previousReplayFrom);
                }

                _previousReplayFrom = image.ReplayFrom;
                _lastCheckpointTail = _wal.TailAddress;
                _lastCheckpointTicks = Stopwatch.GetTimestamp();
                return new CheckpointResult(image.Contexts.Count, held.Count, _wal.BeginAddress - before, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            finally
            {
                foreach (KvBlock b in held)
                {
                    b.Release();
                }
            }
        }
    }

    /// <summary>Blocks until the log record at <paramref name="address"/> (−1 = none) is durable.</summary>
    internal void WaitDurable(long address)
    {
        if (address >= 0 && _wal is not null)
        {
            _wal.WaitDurable(address);
        }
    }

    internal Task WaitDurableAsync(long address) =>
        address >= 0 && _wal is not null ? _wal.WaitDurableAsync(address) : Task.CompletedTask;

    /// <summary>Appends a finished record unless memory only or replaying; returns its address or −1. Disposes the writer.</summary>
    internal long LogRecord(WalRecordType type, RecordWriter record)
    {
        using (record)
        {
            return Logging ? _wal!.Append(record.Finish(type)) : -1;
        }
    }

    private long Log(WalRecordType type, Func<RecordWriter> build) => Logging ? LogRecord(type, build()) : -1;

    private void Report(string problem)
    {
        if (Options.Logger is ILogger logger)
        {
            logger.LogWarning("kvdb store: {Problem}", problem);
        }
        else
        {
            Console.Error.WriteLine("kvdb store: " + problem);
        }
    }

    private void ReportCorrupt(string problem)
    {
        Interlocked.Increment(ref _corrupt);
        lock (_recoveryProblems)
        {
            if (_recoveryProblems.Count < 1000)
            {
                _recoveryProblems.Add(problem);
            }
        }

        Report(problem);
    }

    private BlockManager OpenDurable(string dir)
    {
        long started = Stopwatch.GetTimestamp();
        System.IO.Directory.CreateDirectory(dir);
        _wal = new WriteAheadLog(dir);
        _blockLog = new BlockLog(dir);
        if (_wal.Quarantined)
        {
            ReportCorrupt("the write-ahead log's commit metadata could not be read; it was moved aside (wal.corrupt-*) and a new log started — operations after the last checkpoint are lost");
        }

        if (_blockLog.Quarantined)
        {
            ReportCorrupt("the block log's commit metadata could not be read; it was moved aside (blocks.corrupt-*) — blocks stored only there are reported as corrupt when read");
        }

        var manager = new BlockManager(_arena, _blockLog, _directory);
        Blocks = manager;
        _replaying = true;
        try
        {
            Recover(dir, manager);
        }
        finally
        {
            _replaying = false;
        }

        _lastCheckpointTail = _wal.TailAddress;
        _scrubPending = 1;
        RecoveryTime = Stopwatch.GetElapsedTime(started);
        return manager;
    }

    private void CloseDurable()
    {
        lock (_checkpointGate)
        {
            _wal?.Dispose();
            _blockLog?.Dispose();
        }
    }

    /// <summary>
    /// Once after start, in the background: reads every block that is only on disk and checks its checksum, so
    /// corruption shows up in the stats and the log without waiting for a reader (which would get DATA_LOSS).
    /// </summary>
    private void ScrubOnce()
    {
        if (Interlocked.Exchange(ref _scrubPending, 0) == 0)
        {
            return;
        }

        var seen = new HashSet<KvBlock>(ReferenceEqualityComparer.Instance);
        var held = new List<KvBlock>();
        foreach (KvContext c in _contexts.Values)
        {
            lock (c.Gate)
            {
                foreach (ContextLayer l in c.Layers)
                {
                    foreach (KvBlock b in l.Blocks)
                    {
                        if (!b.IsResident && b.DiskAddress >= 0 && seen.Add(b) && b.TryAddRef())
                        {
                            held.Add(b);
                        }
                    }
                }
            }
        }

        try
        {
            foreach (KvBlock b in held)
            {
                if (Volatile.Read(ref _disposed) != 0)
                {
                    return;
                }

                if (!Blocks.Verify(b))
                {
                    Report($"block {b.Address} failed its checksum on disk; reads of the layers holding it fail with DATA_LOSS");
                }
            }
        }
        finally
        {
            foreach (KvBlock b in held)
            {
                b.Release();
            }
        }
    }

    private void MaybeCheckpoint()
    {
        if (_wal is null)
        {
            return;
        }

        long grown = _wal.TailAddress - _lastCheckpointTail;
        bool due = grown > 0 && Stopwatch.GetElapsedTime(Interlocked.Read(ref _lastCheckpointTicks)) >= Options.CheckpointInterval;
        if (grown >= Options.CheckpointLogBytes || due)
        {
            Checkpoint();
        }
    }

    /// <summary>Captures a context's committed state; metadata lock and context gate held. Full blocks get a reference added to <paramref name="held"/>.</summary>
    private ContextImage Capture(KvContext c, CheckpointImage image, List<KvBlock> held)
    {
        if (c.OpenTransaction is AppendTransaction tx)
        {
            image.OpenTransactions.Add(tx.Id);
            if (tx.FirstAddress >= 0)
            {
                image.ReplayFrom = Math.Min(image.ReplayFrom, tx.FirstAddress);
            }
        }

        int b = c.Model.BlockSize;
        int tokenBytes = c.Model.NumKvHeads * c.Model.RowBytes;
        var layers = new LayerImage[c.Layers.Length];
        for (int layer = 0; layer < layers.Length; layer++)
        {
            long length = c.CommittedLengths[layer];
            int full = (int)(length / b);
            int rows = (int)(length % b);
            byte[] tailKeys = [];
            byte[] tailValues = [];
            if (rows > 0)
            {
                KvBlock tail = c.Layers[layer].Blocks[full];
                tailKeys = new byte[rows * tokenBytes];
                tailValues = new byte[rows * tokenBytes];
                Blocks.Pin(tail);
                try
                {
                    tail.ReadRows(0, rows, tailKeys, tailValues);
                }
                finally
                {
                    Blocks.Unpin(tail);
                }
            }

            var li = new LayerImage { Length = length, TailKeys = tailKeys, TailValues = tailValues };
            for (int i = 0; i < full; i++)
            {
                KvBlock block = c.Layers[layer].Blocks[i];
                block.AddRef();
                held.Add(block);
                li.Blocks.Add(block);
            }

            layers[layer] = li;
        }

        return new ContextImage
        {
            Id = c.Id,
            Model = c.Model.Name,
            Namespace = c.Namespace,
            CreatedUnixMs = c.CreatedUnixMs,
            ExpiresAtUnixMs = c.ExpiresAtUnixMs,
            TokenIds = CollectionsMarshal.AsSpan(c.TokenIds)[..(int)c.CommittedTokenIds].ToArray(),
            Layers = layers,
        };
    }

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
            _previousReplayFrom = image.ReplayFrom;
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
            _models[m.Name] = m;
        }

        var byHandle = new Dictionary<long, KvBlock>();
        foreach (ContextImage ci in image.Contexts)
        {
            if (!_models.TryGetValue(ci.Model, out ModelSchema? schema) || ci.Layers.Length != schema.NumLayers)
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

                    KvBlock block = manager.AdoptSpilled(schema, layer, new BlockAddress(c.Chain[i], layer), checksum, handle);
                    _directory.Publish(block);
                    byHandle[handle] = block;
                    l.Blocks.Add(block);
                }

                if (rows > 0)
                {
                    KvBlock tail = manager.Allocate(schema, layer);
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
    }

    /// <summary>Applies log records after a checkpoint, rebuilding every committed transaction.</summary>
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

        public void Visit(long address, ReadOnlySpan<byte> record)
        {
            LastAddress = address;
            if (!RecordWriter.TryOpen(record, out WalRecordType type, out ReadOnlySpan<byte> payload))
            {
                _store.ReportCorrupt($"write-ahead log record at {address} failed its checksum and was skipped");
                return;
            }

            try
            {
                Apply(address, type, payload);
            }
            catch (InvalidDataException e)
            {
                _store.ReportCorrupt($"write-ahead log record at {address} is malformed ({e.Message}) and was skipped");
            }
            catch (KvDbException e)
            {
                _store.ReportCorrupt($"write-ahead log record at {address} ({type}) could not be applied: {e.Message}");
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

        private void Apply(long address, WalRecordType type, ReadOnlySpan<byte> payload)
        {
            var r = new RecordReader(payload);
            bool beforeCut = address < _cut;
            switch (type)
            {
                case WalRecordType.Model:
                    if (!beforeCut)
                    {
                        _store.CreateModel(WalCodec.ReadModel(ref r));
                    }

                    break;
                case WalRecordType.ContextCreate:
                    if (!beforeCut)
                    {
                        string id = r.ReadString();
                        string model = r.ReadString();
                        string ns = r.ReadString();
                        long created = r.ReadInt64();
                        long expires = r.ReadInt64();
                        int[] prefix = r.ReadInts();
                        (_, _, long shared) = _store.CreateCore(_store.GetModel(model), ns, id, prefix, created, expires);
                        if (shared != prefix.Length)
                        {
                            _store.ReportCorrupt($"context \"{id}\" was created from a {prefix.Length}-token cached prefix but only {shared} tokens of it were recovered");
                        }
                    }

                    break;
                case WalRecordType.ContextDelete:
                    if (!beforeCut)
                    {
                        _store.DeleteContext(r.ReadString());
                    }

                    break;
                case WalRecordType.ContextFork:
                    if (!beforeCut)
                    {
                        string source = r.ReadString();
                        string id = r.ReadString();
                        long created = r.ReadInt64();
                        r.ReadInt64();
                        _store.ForkCore(_store.Find(source), id, created);
                    }

                    break;
                case WalRecordType.Chunk:
                    ApplyChunk(ref r, beforeCut);
                    break;
                case WalRecordType.Commit:
                case WalRecordType.Abort:
                    {
                        long txn = r.ReadInt64();
                        if ((beforeCut && !_open.Contains(txn)) || !_txns.Remove(txn, out AppendTransaction? tx))
                        {
                            break;
                        }

                        if (type == WalRecordType.Abort)
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

                    break;
                case WalRecordType.CheckpointMarker:
                    break;
                default:
                    _store.ReportCorrupt($"write-ahead log record at {address} has unknown type {(int)type} and was skipped");
                    break;
            }

        }

        private void ApplyChunk(ref RecordReader r, bool beforeCut)
        {
            long txn = r.ReadInt64();
            if (beforeCut && !_open.Contains(txn))
            {
                return;
            }

            string contextId = r.ReadString();
            int layer = r.ReadInt32();
            long start = r.ReadInt64();
            int[] ids = r.ReadInts();
            ReadOnlySpan<byte> keys = r.ReadBytes();
            ReadOnlySpan<byte> values = r.ReadBytes();
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
                tx.Append(layer, ids, keys, values);
            }
            catch (KvDbException e)
            {
                tx.Failed = true;
                _store.ReportCorrupt($"append {txn} to context \"{contextId}\" could not be replayed: {e.Message}");
            }
        }
    }
}

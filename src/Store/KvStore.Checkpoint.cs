using System.Diagnostics;
using System.Runtime.InteropServices;
using KvDb.Store.Durability;

namespace KvDb.Store;

// Checkpoints: a marker in the log (the cut), every context's committed state, the file, then log truncation.
public partial class KvStore
{
    private readonly Lock _checkpointGate = new();
    private long _lastCheckpointTail;
    private long _lastCheckpointTicks = Stopwatch.GetTimestamp();

    /// <inheritdoc />
    public CheckpointResult Checkpoint()
    {
        if (_wal is null || Options.DataDirectory is null)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "this server keeps everything in memory, so there is nothing to checkpoint; start it with --data DIR for persistence");
        }

        lock (_checkpointGate)
        {
            return CheckpointLocked();
        }
    }

    /// <summary>Takes a checkpoint; the caller holds the checkpoint gate and has checked the store is durable.</summary>
    private CheckpointResult CheckpointLocked()
    {
        WriteAheadLog wal = _wal!;
        string dir = Options.DataDirectory!;
        long started = Stopwatch.GetTimestamp();
        var image = new CheckpointImage();
        var held = new List<KvBlock>();
        try
        {
            lock (_opLock)
            {
                using (RecordWriter marker = WalCodec.Encode(CheckpointMarkerRecord.Instance))
                {
                    image.Cut = wal.Append(marker.Finish(WalRecordType.CheckpointMarker));
                }

                image.ReplayFrom = image.Cut;
                image.NextTransactionId = Interlocked.Read(ref _nextTxnId) + 1;
                image.Models.AddRange(_models.All);
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
            long before = wal.BeginAddress;

            // Both copies of the checkpoint are durable: the log before its replay start is not needed any more.
            wal.TruncateUntil(image.ReplayFrom);
            _lastCheckpointTail = wal.TailAddress;
            _lastCheckpointTicks = Stopwatch.GetTimestamp();
            var result = new CheckpointResult(image.Contexts.Count, held.Count, wal.BeginAddress - before, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            CheckpointTaken?.Invoke(result.Milliseconds / 1e3);
            return result;
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
            Pinned = c.Pinned,
            PinTier = c.PinTier,
            TokenIds = CollectionsMarshal.AsSpan(c.TokenIds)[..(int)c.CommittedTokenIds].ToArray(),
            Layers = layers,
        };
    }
}

using System.Diagnostics;
using KvDb.Store.Durability;

namespace KvDb.Store;

// Space reclamation of the disk block log: live records are copied to the tail, a checkpoint records their new
// addresses, and the log is truncated below the copied range. See docs/storage.md ("Space reclamation").
public partial class KvStore
{
    /// <summary>Blocks copied between two flushes of the block log during compaction (bounds the copies not yet durable).</summary>
    private const long CompactionBatchBytes = 64L << 20;

    private long _compactions;

    /// <inheritdoc />
    public CompactionResult Compact()
    {
        if (_blockLog is null || _wal is null)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "this server keeps everything in memory, so there is no disk space to reclaim; start it with --data DIR for persistence");
        }

        // Checkpoints write disk handles too (blocks spilled for the checkpoint); one at a time keeps the rule simple:
        // the checkpoint that ends a compaction sees every moved handle and nothing in the truncated range.
        lock (_checkpointGate)
        {
            // Copying forward needs room for every live record before anything is given back.
            if (!_blockLog.HasRoom(_blockLog.LiveBytes))
            {
                throw _blockLog.Full(_blockLog.LiveBytes);
            }

            long started = Stopwatch.GetTimestamp();
            long logBefore = _blockLog.FileBytes;
            long diskBefore = _blockLog.BytesOnDisk;
            long from = _blockLog.BeginAddress;
            long below = _blockLog.TailAddress;
            var held = new List<KvBlock>();
            (long Blocks, long Bytes, long Corrupt) moved;
            try
            {
                CollectBlocks(held);
                moved = Blocks.Relocate(held, from, below, CompactionBatchBytes);
            }
            finally
            {
                foreach (KvBlock b in held)
                {
                    b.Release();
                }
            }

            // The checkpoint records the new handles (both of its copies) before anything they replace is dropped: a
            // crash before this point recovers from the previous checkpoint, whose records are all still there.
            CheckpointLocked();
            _blockLog.TruncateUntil(below);
            Interlocked.Increment(ref _compactions);
            var result = new CompactionResult(
                moved.Blocks, moved.Bytes, moved.Corrupt, logBefore, _blockLog.FileBytes, diskBefore, _blockLog.BytesOnDisk,
                Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            Compacted?.Invoke(result);
            return result;
        }
    }

    /// <summary>A compaction finished (manual or automatic).</summary>
    public event Action<CompactionResult>? Compacted;

    /// <summary>The disk space of the data directory (null when memory only).</summary>
    public DiskSpace? GetDiskSpace()
    {
        if (_blockLog is null || _wal is null || Options.DataDirectory is not string dir)
        {
            return null;
        }

        return new DiskSpace(
            _blockLog.LiveBytes, _blockLog.DeadBytes, _blockLog.BytesOnDisk,
            FasterLogFiles.SegmentBytes(Path.Combine(dir, "wal"), "wal"), Interlocked.Read(ref _compactions));
    }

    /// <summary>Compacts when the block log's dead records pass the configured ratio and size (the automatic policy).</summary>
    private void MaybeCompact()
    {
        if (_blockLog is null || Options.CompactionDeadRatio <= 0)
        {
            return;
        }

        long dead = _blockLog.DeadBytes;
        long total = _blockLog.FileBytes;
        if (dead >= Options.CompactionMinDeadBytes && total > 0 && dead >= Options.CompactionDeadRatio * total)
        {
            Compact();
        }
    }

    /// <summary>Adds a reference to every block a context holds (each block once) to <paramref name="held"/>.</summary>
    private void CollectBlocks(List<KvBlock> held)
    {
        var seen = new HashSet<KvBlock>(ReferenceEqualityComparer.Instance);
        foreach (KvContext c in _contexts.Values)
        {
            lock (c.Gate)
            {
                foreach (ContextLayer l in c.Layers)
                {
                    foreach (KvBlock b in l.Blocks)
                    {
                        if (seen.Add(b))
                        {
                            b.AddRef();
                            held.Add(b);
                        }
                    }
                }
            }
        }
    }
}

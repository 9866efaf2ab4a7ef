using System.Diagnostics;
using KvDb.Store.Durability;

namespace KvDb.Store;

// Durability: the write-ahead log and the disk block log of a data directory, opening and closing them, and the
// problems found in them. Checkpoints, recovery and the scrub have their own files. See docs/storage.md for
// formats and guarantees.
public partial class KvStore
{
    private readonly List<string> _recoveryProblems = [];
    private WriteAheadLog? _wal;
    private BlockLog? _blockLog;
    private DiskSpaceGuard? _diskSpace;
    private long _corrupt;
    private bool _replaying;

    /// <summary>True when the store keeps a data directory.</summary>
    public bool Durable => _wal is not null;

    /// <summary>Problems found while opening the data directory (corrupt records, files moved aside), in order.</summary>
    public IReadOnlyList<string> RecoveryProblems => _recoveryProblems;

    /// <summary>How long opening the data directory took (checkpoint load plus log replay).</summary>
    public TimeSpan RecoveryTime { get; private set; }

    private bool Logging => _wal is not null && !_replaying;

    /// <summary>Seconds each wait for a log record to become durable took (an acknowledgement's commit latency).</summary>
    public event Action<double>? WalCommitted;

    /// <summary>Seconds each checkpoint took.</summary>
    public event Action<double>? CheckpointTaken;

    /// <summary>Blocks until the log record at <paramref name="address"/> (−1 = none) is durable.</summary>
    private void WaitDurable(long address)
    {
        if (address >= 0 && _wal is not null)
        {
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            _wal.WaitDurable(address);
            WalCommitted?.Invoke(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    private async Task WaitDurableAsync(long address)
    {
        if (address >= 0 && _wal is not null)
        {
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            await _wal.WaitDurableAsync(address).ConfigureAwait(false);
            WalCommitted?.Invoke(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    /// <summary>Appends a finished record unless memory only or replaying; returns its address or −1. Disposes the writer.</summary>
    private long LogRecord(WalRecordType type, RecordWriter record)
    {
        using (record)
        {
            return Logging ? _wal!.Append(record.Finish(type)) : -1;
        }
    }

    /// <summary>Encodes and appends <paramref name="record"/> unless memory only or replaying; returns its address or −1.</summary>
    private long Log(WalRecord record) => Logging ? LogRecord(record.Type, WalCodec.Encode(record)) : -1;

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
        _diskSpace = new DiskSpaceGuard(dir, Options.DiskReserveBytes);
        _wal = new WriteAheadLog(dir, Options.LogSegmentSizeBits);
        _blockLog = new BlockLog(dir, Options.LogSegmentSizeBits, _diskSpace, Options.DiskReadFaults);
        if (_wal.Quarantined)
        {
            ReportCorrupt("the write-ahead log's commit metadata could not be read; it was moved aside (wal.corrupt-*) and a new log started — operations after the last checkpoint are lost");
        }

        if (_blockLog.Quarantined)
        {
            ReportCorrupt("the block log's commit metadata could not be read; it was moved aside (blocks.corrupt-*) — blocks stored only there are reported as corrupt when read");
        }

        var manager = new BlockManager(_arena, _blockLog, _directory, Options.EvictionPolicy);
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
}

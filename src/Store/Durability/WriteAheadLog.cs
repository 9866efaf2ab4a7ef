using FASTER.core;
using KvDb.Core;

namespace KvDb.Store.Durability;

/// <summary>
/// The write-ahead log: a FasterLog of checksummed records (see <see cref="RecordWriter"/>). Records are
/// enqueued as operations happen; an operation is acknowledged only after a commit covering its last record,
/// so every acknowledged operation survives a crash. Commits are shared by everything enqueued before them
/// (group commit).
/// </summary>
internal sealed class WriteAheadLog : IDisposable
{
    private readonly FasterLog _log;
    private readonly IDevice _device;
    private readonly string _folder;

    public WriteAheadLog(string dataDirectory, int newSegmentBits = FasterLogFiles.SegmentSizeBits)
    {
        (_log, _device, Quarantined) = FasterLogFiles.Open(dataDirectory, "wal", newSegmentBits);
        _folder = Path.Combine(dataDirectory, "wal");
    }

    /// <summary>True when the previous log could not be opened and was moved aside.</summary>
    public bool Quarantined { get; }

    public long BeginAddress => _log.BeginAddress;

    public long TailAddress => _log.TailAddress;

    /// <summary>Enqueues a finished record; returns its address.</summary>
    public long Append(ReadOnlySpan<byte> record) => _log.Enqueue(record);

    /// <summary>Blocks until everything up to and including the record at <paramref name="address"/> is durable.</summary>
    public void WaitDurable(long address) => WaitDurableAsync(address).GetAwaiter().GetResult();

    /// <summary>Completes once everything up to and including the record at <paramref name="address"/> is durable.</summary>
    public async Task WaitDurableAsync(long address)
    {
        if (address < 0 || _log.CommittedUntilAddress > address)
        {
            return;
        }

        try
        {
            _log.Commit(spinWait: false);
            await _log.WaitForCommitAsync(address + 1).ConfigureAwait(false);
        }
        catch (Exception e) when (e is FasterException or IOException)
        {
            // FasterLog stops for good after a failed device write; only a restart (on a disk with room) opens it again.
            // DiskSpaceGuard keeps K/V writes from getting here; this says what happened if something else filled the disk.
            throw new KvDbException(
                KvDbErrorCode.ResourceExhausted,
                $"the write-ahead log could not be written ({e.Message}), most likely because the data directory's disk is full; nothing after the last acknowledged write is durable: free space on it and restart the server");
        }
    }

    /// <summary>
    /// Calls <paramref name="visit"/> for every committed record from <paramref name="from"/> on. Returns false when
    /// the log's own framing broke (the rest of the log cannot be read); the records before that were visited.
    /// </summary>
    public bool Scan(long from, RecordVisitor visit)
    {
        try
        {
            using FasterLogScanIterator it = _log.Scan(Math.Max(from, _log.BeginAddress), _log.TailAddress);
            while (it.GetNext(out byte[] entry, out int length, out long address))
            {
                visit(address, entry.AsMemory(0, length));
            }

            return true;
        }
        catch (Exception e) when (e is FasterException or IOException or InvalidDataException or IndexOutOfRangeException or ArgumentException or OverflowException)
        {
            return false;
        }
    }

    /// <summary>Drops records before <paramref name="address"/> (a record start) and commits the new begin.</summary>
    public void TruncateUntil(long address) => FasterLogFiles.TruncateUntil(_log, _device, _folder, "wal", address);

    public void Dispose()
    {
        _log.Dispose();
        _device.Dispose();
    }

    /// <summary>Receives one scanned record (its bytes are valid during the call only).</summary>
    public delegate void RecordVisitor(long address, ReadOnlyMemory<byte> record);
}

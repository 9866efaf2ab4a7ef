using System.Buffers;
using FASTER.core;
using KvDb.Core;

namespace KvDb.Store.Durability;

/// <summary>
/// The disk tier: full blocks written once each into a FasterLog under DIR/blocks and addressed by log address.
/// Record: <see cref="BlockRecord"/> (header, then the block's bytes: keys region then values region). A read checks the
/// header against the address it expects and the content checksum, so a torn, overwritten or misdirected record is never
/// served. Space of freed blocks comes back by compaction (<see cref="KvStore.Compact"/>): live records below a point are
/// copied to the tail, a checkpoint records their new addresses, and the log is truncated there (whole segment files
/// are deleted).
/// </summary>
internal sealed class BlockLog : ISpillTier, IDisposable
{
    private const int HeaderBytes = BlockRecord.HeaderBytes;

    private readonly FasterLog _log;
    private readonly IDevice _device;
    private readonly string _folder;
    private readonly DiskSpaceGuard? _space;
    private readonly IDiskReadFaults? _faults;
    private long _liveBytes;

    public BlockLog(string dataDirectory, int newSegmentBits = FasterLogFiles.SegmentSizeBits, DiskSpaceGuard? space = null, IDiskReadFaults? faults = null)
    {
        (_log, _device, Quarantined) = FasterLogFiles.Open(dataDirectory, "blocks", newSegmentBits);
        _folder = Path.Combine(dataDirectory, "blocks");
        _space = space;
        _faults = faults;
    }

    /// <summary>True when the previous block log could not be opened and was moved aside.</summary>
    public bool Quarantined { get; }

    public string Name => "disk";

    /// <summary>Largest block the log can hold.</summary>
    public static long MaxBlockBytes => FasterLogFiles.MaxRecordBytes - HeaderBytes;

    /// <summary>Bytes in the log's address range (live and dead records).</summary>
    public long FileBytes => _log.TailAddress - _log.BeginAddress;

    /// <summary>Bytes of the address range taken by records some block still refers to (<see cref="RecordBytes"/> each).</summary>
    public long LiveBytes => Interlocked.Read(ref _liveBytes);

    /// <summary>Bytes of records no block refers to any more: space compaction can give back.</summary>
    public long DeadBytes => Math.Max(0, FileBytes - LiveBytes);

    /// <summary>The first address still in the log.</summary>
    public long BeginAddress => _log.BeginAddress;

    /// <summary>The address the next record gets.</summary>
    public long TailAddress => _log.TailAddress;

    /// <summary>Bytes the log's segment files take on disk now (what the file system sees).</summary>
    public long BytesOnDisk => FasterLogFiles.SegmentBytes(_folder, "blocks");

    /// <summary>
    /// Bytes of the log's address range a block of <paramref name="blockBytes"/> takes: FasterLog's 4-byte length header,
    /// the record aligned to 4 bytes, and its share of the end of each page that no whole record fits in (a record never
    /// spans pages), rounded up so that live records account for every byte of a page full of them.
    /// </summary>
    public static long RecordBytes(long blockBytes)
    {
        long allocated = 4 + ((HeaderBytes + blockBytes + 3) & ~3L);
        long page = 1L << FasterLogFiles.PageSizeBits;
        long perPage = Math.Max(1, page / allocated);
        return (page + perPage - 1) / perPage;
    }

    public TierStats GetStats() => new(Name, FileBytes, 0, 0, 0);

    public bool HasRoom(long bytes) => _space?.HasRoom(bytes + HeaderBytes) ?? true;

    public KvDbException Full(long bytes) =>
        _space?.Full(_space.AvailableBytes, bytes, "writing blocks to the disk tier") ?? new KvDbException(KvDbErrorCode.ResourceExhausted, "the disk tier is full");

    public long Write(BlockAddress address, ulong checksum, ReadOnlySpan<byte> blockBytes)
    {
        byte[] record = ArrayPool<byte>.Shared.Rent(HeaderBytes + blockBytes.Length);
        try
        {
            Span<byte> s = record.AsSpan(0, HeaderBytes + blockBytes.Length);
            BlockRecord.Write(s, address, checksum, blockBytes);
            long handle = _log.Enqueue(s);
            Interlocked.Add(ref _liveBytes, RecordBytes(blockBytes.Length));
            return handle;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(record);
        }
    }

    public void Flush()
    {
        long tail = _log.TailAddress;
        if (_log.CommittedUntilAddress >= tail)
        {
            return;
        }

        _log.Commit(spinWait: false);
        _log.WaitForCommitAsync(tail).AsTask().GetAwaiter().GetResult();
    }

    public bool TryRead(long handle, BlockAddress address, ulong checksum, Span<byte> destination, CancellationToken cancellationToken = default)
    {
        IMemoryOwner<byte>? owner = null;
        try
        {
            _faults?.BeforeRead(address, cancellationToken);
            (owner, int length) = _log.ReadAsync(handle, MemoryPool<byte>.Shared, HeaderBytes + destination.Length, cancellationToken).AsTask().GetAwaiter().GetResult();
            if (owner is null || length != HeaderBytes + destination.Length)
            {
                return false;
            }

            _faults?.AfterRead(address, owner.Memory.Span[..length]);
            if (!BlockRecord.TryOpen(owner.Memory.Span[..length], address, checksum, destination.Length, out ReadOnlySpan<byte> block))
            {
                return false;
            }

            block.CopyTo(destination);
            return true;
        }
        // An IOException is the device failing the read, not a bad copy: it propagates, so the block is not marked corrupt
        // and a later read may succeed. What FASTER throws for a record it cannot frame is a bad copy.
        catch (Exception e) when (e is FasterException or InvalidDataException or IndexOutOfRangeException or ArgumentException or OverflowException or InvalidOperationException)
        {
            return false;
        }
        finally
        {
            owner?.Dispose();
        }
    }

    public void Forget(long handle, long blockBytes) => Interlocked.Add(ref _liveBytes, -RecordBytes(blockBytes));

    /// <summary>Counts a record written before this process started (found in a checkpoint) as live.</summary>
    public void Adopt(long blockBytes) => Interlocked.Add(ref _liveBytes, RecordBytes(blockBytes));

    /// <summary>
    /// Drops every record before <paramref name="address"/> (a record start) and commits the new begin; segment files
    /// entirely below it are deleted. Only call once nothing durable refers to those records.
    /// </summary>
    public void TruncateUntil(long address) => FasterLogFiles.TruncateUntil(_log, _device, _folder, "blocks", address);

    public void Dispose()
    {
        _log.Dispose();
        _device.Dispose();
    }
}

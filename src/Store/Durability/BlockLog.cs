using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using FASTER.core;
using KvDb.Core;

namespace KvDb.Store.Durability;

/// <summary>
/// The disk tier: full blocks written once each into a FasterLog under DIR/blocks and addressed by log address.
/// Record = magic "KVB1" · layer i32 · chain u128 · content XxHash3 u64 · length i32 · 4 zero bytes · the block's
/// bytes (keys region then values region). A read checks the header against the address it expects and the
/// content checksum, so a torn, overwritten or misdirected record is never served. Space of freed blocks is
/// not reclaimed yet (the log only grows; see docs/storage.md).
/// </summary>
internal sealed class BlockLog : ISpillTier, IDisposable
{
    private const uint Magic = 0x3142564B; // "KVB1" little-endian
    private const int HeaderBytes = 40;

    private readonly FasterLog _log;
    private readonly IDevice _device;
    private readonly DiskSpaceGuard? _space;
    private readonly IDiskReadFaults? _faults;
    private long _garbageBytes;

    public BlockLog(string dataDirectory, DiskSpaceGuard? space = null, IDiskReadFaults? faults = null)
    {
        (_log, _device, Quarantined) = FasterLogFiles.Open(dataDirectory, "blocks");
        _space = space;
        _faults = faults;
    }

    /// <summary>True when the previous block log could not be opened and was moved aside.</summary>
    public bool Quarantined { get; }

    public string Name => "disk";

    /// <summary>Largest block the log can hold.</summary>
    public static long MaxBlockBytes => FasterLogFiles.MaxRecordBytes - HeaderBytes;

    /// <summary>Bytes in the log file range (live and garbage).</summary>
    public long FileBytes => _log.TailAddress - _log.BeginAddress;

    /// <summary>Bytes of freed blocks still in the file.</summary>
    public long GarbageBytes => Interlocked.Read(ref _garbageBytes);

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
            BinaryPrimitives.WriteUInt32LittleEndian(s, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(s[4..], address.Layer);
            BinaryPrimitives.WriteUInt128LittleEndian(s[8..], address.Chain);
            BinaryPrimitives.WriteUInt64LittleEndian(s[24..], checksum);
            BinaryPrimitives.WriteInt32LittleEndian(s[32..], blockBytes.Length);
            BinaryPrimitives.WriteInt32LittleEndian(s[36..], 0);
            blockBytes.CopyTo(s[HeaderBytes..]);
            return _log.Enqueue(s);
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
            ReadOnlySpan<byte> s = owner.Memory.Span[..length];
            if (BinaryPrimitives.ReadUInt32LittleEndian(s) != Magic
                || BinaryPrimitives.ReadInt32LittleEndian(s[4..]) != address.Layer
                || BinaryPrimitives.ReadUInt128LittleEndian(s[8..]) != address.Chain
                || BinaryPrimitives.ReadUInt64LittleEndian(s[24..]) != checksum
                || BinaryPrimitives.ReadInt32LittleEndian(s[32..]) != destination.Length
                || XxHash3.HashToUInt64(s[HeaderBytes..]) != checksum)
            {
                return false;
            }

            s[HeaderBytes..].CopyTo(destination);
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

    public void Forget(long handle, long blockBytes) => Interlocked.Add(ref _garbageBytes, blockBytes + HeaderBytes);

    public void Dispose()
    {
        _log.Dispose();
        _device.Dispose();
    }
}

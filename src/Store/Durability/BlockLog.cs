using System.Buffers;
using FASTER.core;

namespace KvDb.Store.Durability;

/// <summary>
/// The disk tier: full blocks written once each into a FasterLog under DIR/blocks and addressed by log address.
/// Record: <see cref="BlockRecord"/> (header, then the block's bytes: keys region then values region). A read checks the header against the address it expects and the
/// content checksum, so a torn, overwritten or misdirected record is never served. Space of freed blocks is
/// not reclaimed yet (the log only grows; see docs/storage.md).
/// </summary>
internal sealed class BlockLog : ISpillTier, IDisposable
{
    private const int HeaderBytes = BlockRecord.HeaderBytes;

    private readonly FasterLog _log;
    private readonly IDevice _device;
    private long _garbageBytes;

    public BlockLog(string dataDirectory)
    {
        (_log, _device, Quarantined) = FasterLogFiles.Open(dataDirectory, "blocks");
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

    public long Write(BlockAddress address, ulong checksum, ReadOnlySpan<byte> blockBytes)
    {
        byte[] record = ArrayPool<byte>.Shared.Rent(HeaderBytes + blockBytes.Length);
        try
        {
            Span<byte> s = record.AsSpan(0, HeaderBytes + blockBytes.Length);
            BlockRecord.Write(s, address, checksum, blockBytes);
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

    public bool TryRead(long handle, BlockAddress address, ulong checksum, Span<byte> destination)
    {
        IMemoryOwner<byte>? owner = null;
        try
        {
            (owner, int length) = _log.ReadAsync(handle, MemoryPool<byte>.Shared, HeaderBytes + destination.Length).AsTask().GetAwaiter().GetResult();
            if (owner is null || length != HeaderBytes + destination.Length)
            {
                return false;
            }

            if (!BlockRecord.TryOpen(owner.Memory.Span[..length], address, checksum, destination.Length, out ReadOnlySpan<byte> block))
            {
                return false;
            }

            block.CopyTo(destination);
            return true;
        }
        catch (Exception e) when (e is FasterException or IOException or InvalidDataException or IndexOutOfRangeException or ArgumentException or OverflowException or InvalidOperationException)
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

using KvDb.Core;

namespace KvDb.Store.Durability;

/// <summary>
/// Keeps writes to the data directory from running its filesystem out of space. FasterLog treats a failed device
/// write (ENOSPC) as permanent: the log refuses every later operation until the process restarts. So the store
/// checks the free space (one statfs) before it writes K/V (append chunks, block copies, checkpoints) and refuses
/// with RESOURCE_EXHAUSTED while less than <see cref="ReserveBytes"/> would be left; the reserve takes the small
/// writes that are never refused (commit metadata, context records, Abort records, index files). Once space
/// returns the same calls succeed again.
/// </summary>
internal sealed class DiskSpaceGuard
{
    private readonly string _directory;

    public DiskSpaceGuard(string directory, long reserveBytes)
    {
        _directory = directory;
        ReserveBytes = reserveBytes;
    }

    public long ReserveBytes { get; }

    /// <summary>Bytes free for this process on the data directory's filesystem.</summary>
    public long AvailableBytes => new DriveInfo(_directory).AvailableFreeSpace;

    /// <summary>True when <paramref name="bytes"/> more leave at least the reserve free.</summary>
    public bool HasRoom(long bytes) => AvailableBytes - bytes >= ReserveBytes;

    /// <summary>Throws RESOURCE_EXHAUSTED unless <paramref name="bytes"/> more leave at least the reserve free.</summary>
    public void EnsureRoom(long bytes, string what)
    {
        long available = AvailableBytes;
        if (available - bytes < ReserveBytes)
        {
            throw Full(available, bytes, what);
        }
    }

    public KvDbException Full(long available, long bytes, string what) => new(
        KvDbErrorCode.ResourceExhausted,
        $"the data directory {_directory} is full: {available} bytes free, {what} needs {bytes} and {ReserveBytes} are kept in reserve; " +
        "free space on its filesystem (delete other files there or grow it), or delete contexts and run Admin.Compact (kvdb compact; it needs room " +
        "for the live blocks it copies); writes resume once there is room");
}

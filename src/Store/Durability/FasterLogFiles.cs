using FASTER.core;

namespace KvDb.Store.Durability;

/// <summary>
/// Opens a FasterLog in a folder of the data directory, recovering its last commit. A log whose commit
/// metadata cannot be read is moved aside (renamed "NAME.corrupt-TIMESTAMP", kept for inspection) and a fresh
/// one is started, so the server still starts; the caller reports the loss.
/// </summary>
internal static class FasterLogFiles
{
    /// <summary>Page size: the largest record (a block or a WAL chunk piece plus its header) must fit in one page.</summary>
    public const int PageSizeBits = 23;

    /// <summary>Largest record payload the logs accept.</summary>
    public const int MaxRecordBytes = (1 << PageSizeBits) - 4096;

    public static (FasterLog Log, IDevice Device, bool Quarantined) Open(string dataDirectory, string name)
    {
        string folder = Path.Combine(dataDirectory, name);
        long stored = StoredBytes(folder, name);
        if (stored > 0 && !HasCommitMetadata(folder))
        {
            // Killed before the log's first commit finished (kill -9 trials found this on the block log): its records
            // were never durable, so nothing acknowledged or checkpointed refers to them. That is a new log, not a
            // corrupt one; its segments are dropped instead of being moved aside and reported.
            foreach (string f in Directory.GetFiles(folder, name + ".log.*"))
            {
                File.Delete(f);
            }

            stored = 0;
        }

        try
        {
            (FasterLog log, IDevice device) = Create(folder, name);
            if (stored == 0 || log.TailAddress > log.BeginAddress)
            {
                return (log, device, false);
            }

            // The files hold records but no commit could be recovered: the commit metadata is unreadable.
            log.Dispose();
            device.Dispose();
        }
        catch (Exception e) when (e is FasterException or IOException or InvalidDataException or InvalidOperationException or ArgumentException or EndOfStreamException or FormatException or OverflowException)
        {
        }

        string aside = folder + ".corrupt-" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", System.Globalization.CultureInfo.InvariantCulture);
        Directory.Move(folder, aside);
        (FasterLog fresh, IDevice freshDevice) = Create(folder, name);
        return (fresh, freshDevice, true);
    }

    /// <summary>True when FasterLog ever started a commit here (its metadata lives in LogCommitDir/log-commits/commit.N).</summary>
    private static bool HasCommitMetadata(string folder)
    {
        string commits = Path.Combine(folder, "log-commits");
        return Directory.Exists(commits) && Directory.EnumerateFileSystemEntries(commits).Any();
    }

    private static long StoredBytes(string folder, string name)
    {
        if (!Directory.Exists(folder))
        {
            return 0;
        }

        long bytes = 0;
        foreach (string f in Directory.GetFiles(folder, name + ".log.*"))
        {
            bytes += new FileInfo(f).Length;
        }

        return bytes;
    }

    private static (FasterLog Log, IDevice Device) Create(string folder, string name)
    {
        Directory.CreateDirectory(folder);
        IDevice device = Devices.CreateLogDevice(Path.Combine(folder, name + ".log"), preallocateFile: false);
        try
        {
            var settings = new FasterLogSettings
            {
                LogDevice = device,
                PageSizeBits = PageSizeBits,
                MemorySizeBits = PageSizeBits + 2,
                SegmentSizeBits = 30,
                LogCommitDir = folder,
                TryRecoverLatest = true,
                AutoRefreshSafeTailAddress = false,
            };
            return (new FasterLog(settings), device);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }
}

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

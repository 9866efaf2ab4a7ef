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

    /// <summary>
    /// Segment (file) size of new logs: 32 MiB. Space comes back a whole segment at a time (truncation deletes the files
    /// entirely below the log's begin), so a small segment bounds what a truncated log keeps to 32 MiB.
    /// </summary>
    public const int SegmentSizeBits = 25;

    /// <summary>Segment size of logs made before the size was recorded (1 GiB): their files are named by 1 GiB index.</summary>
    public const int LegacySegmentSizeBits = 30;

    /// <summary>The file in a log folder that records its segment size bits: the files' names depend on it.</summary>
    public const string SegmentBitsFile = "segment-bits";

    public static (FasterLog Log, IDevice Device, bool Quarantined) Open(string dataDirectory, string name, int newSegmentBits = SegmentSizeBits)
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
            (FasterLog log, IDevice device) = Create(folder, name, newSegmentBits);
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
        (FasterLog fresh, IDevice freshDevice) = Create(folder, name, newSegmentBits);
        return (fresh, freshDevice, true);
    }

    /// <summary>True when FasterLog ever started a commit here (its metadata lives in LogCommitDir/log-commits/commit.N).</summary>
    private static bool HasCommitMetadata(string folder)
    {
        string commits = Path.Combine(folder, "log-commits");
        return Directory.Exists(commits) && Directory.EnumerateFileSystemEntries(commits).Any();
    }

    /// <summary>
    /// Truncates <paramref name="log"/> before <paramref name="address"/> (a record start), commits the new begin and waits
    /// (at most 2 s) until FASTER has deleted the segment files entirely below it. FASTER deletes them in an action deferred
    /// to the next epoch refresh, which an idle log never has; a read below the begin address (answered empty) is the
    /// cheapest refresh, so the space comes back now instead of at the next append.
    /// </summary>
    public static void TruncateUntil(FasterLog log, IDevice device, string folder, string name, long address)
    {
        if (address <= log.BeginAddress)
        {
            return;
        }

        log.TruncateUntil(address);
        log.Commit(spinWait: true);
        _ = log.ReadAsync(-1).AsTask().GetAwaiter().GetResult();
        long firstKept = address / Math.Max(1, device.SegmentSize);
        long deadline = Environment.TickCount64 + 2000;
        while (HasSegmentBelow(folder, name, firstKept) && Environment.TickCount64 < deadline)
        {
            Thread.Sleep(5);
        }
    }

    private static bool HasSegmentBelow(string folder, string name, long segment)
    {
        string prefix = name + ".log.";
        foreach (string f in Directory.EnumerateFiles(folder, prefix + "*"))
        {
            if (long.TryParse(Path.GetFileName(f).AsSpan(prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) && n < segment)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Bytes of the segment files of log <paramref name="name"/> in <paramref name="folder"/> (0 when there are none).</summary>
    public static long SegmentBytes(string folder, string name) => StoredBytes(folder, name);

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

    /// <summary>
    /// The segment size bits of the log in <paramref name="folder"/>: as recorded, else legacy when files exist without a record
    /// (a folder from before the record), else <paramref name="newSegmentBits"/> (a new log), recorded now.
    /// </summary>
    private static int SegmentBits(string folder, int newSegmentBits)
    {
        string marker = Path.Combine(folder, SegmentBitsFile);
        if (File.Exists(marker)
            && int.TryParse(File.ReadAllText(marker).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int recorded)
            && recorded >= PageSizeBits && recorded <= LegacySegmentSizeBits)
        {
            return recorded;
        }

        // Anything already in the folder (segments, commit metadata) was written by a build that used 1 GiB segments.
        newSegmentBits = Math.Clamp(newSegmentBits, PageSizeBits, LegacySegmentSizeBits);
        int bits = LegacySegmentSizeBits;
        using (IEnumerator<string> existing = Directory.EnumerateFileSystemEntries(folder).GetEnumerator())
        {
            if (!existing.MoveNext())
            {
                bits = newSegmentBits;
            }
        }

        string temp = marker + ".tmp";
        File.WriteAllText(temp, bits.ToString(System.Globalization.CultureInfo.InvariantCulture));
        File.Move(temp, marker, overwrite: true);
        return bits;
    }

    private static (FasterLog Log, IDevice Device) Create(string folder, string name, int newSegmentBits)
    {
        Directory.CreateDirectory(folder);
        int segmentBits = SegmentBits(folder, newSegmentBits);
        IDevice device = Devices.CreateLogDevice(Path.Combine(folder, name + ".log"), preallocateFile: false);
        try
        {
            var settings = new FasterLogSettings
            {
                LogDevice = device,
                PageSizeBits = PageSizeBits,
                MemorySizeBits = PageSizeBits + 2,
                SegmentSizeBits = segmentBits,
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

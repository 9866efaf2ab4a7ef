using KvDb.Store;

namespace KvDb.TestKit.Faults;

/// <summary>
/// An <see cref="IDiskReadFaults"/> whose behaviour a test switches at any time: reads pass, wait (a slow disk,
/// honouring the read's cancellation), throw <see cref="IOException"/> (a failing disk) or come back with a flipped
/// byte (a disk returning other bytes than were written). Counts the reads it saw.
/// </summary>
public sealed class ScriptedDiskFaults : IDiskReadFaults
{
    private int _reads;
    private int _cancelled;

    public DiskReadFault Mode { get; set; }

    /// <summary>How long a <see cref="DiskReadFault.Slow"/> read waits.</summary>
    public TimeSpan Delay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Block reads that reached the disk tier.</summary>
    public int Reads => Volatile.Read(ref _reads);

    /// <summary>Slow reads stopped by the call's cancellation or deadline.</summary>
    public int Cancelled => Volatile.Read(ref _cancelled);

    public void BeforeRead(BlockAddress address, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _reads);
        switch (Mode)
        {
            case DiskReadFault.Fail:
                throw new IOException("injected read error (EIO)");
            case DiskReadFault.Slow:
                try
                {
                    Task.Delay(Delay, cancellationToken).GetAwaiter().GetResult();
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref _cancelled);
                    throw;
                }

                break;
        }
    }

    public void AfterRead(BlockAddress address, Span<byte> record)
    {
        if (Mode == DiskReadFault.Corrupt && record.Length > 0)
        {
            record[^1] ^= 0x5A;
        }
    }
}

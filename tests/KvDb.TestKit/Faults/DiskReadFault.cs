namespace KvDb.TestKit.Faults;

/// <summary>What <see cref="ScriptedDiskFaults"/> does to a disk-tier block read.</summary>
public enum DiskReadFault
{
    None,
    Slow,
    Fail,
    Corrupt,
}

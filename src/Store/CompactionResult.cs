namespace KvDb.Store;

/// <summary>
/// What a compaction of the disk block log did: live blocks copied forward and their bytes, blocks that failed their
/// checksum while being copied (marked corrupt, never served), the log's bytes before and after (its address range:
/// live plus dead records), the segment-file bytes on disk before and after, and how long it took.
/// </summary>
public sealed record CompactionResult(
    long BlocksMoved,
    long BytesMoved,
    long CorruptBlocks,
    long LogBytesBefore,
    long LogBytesAfter,
    long DiskBytesBefore,
    long DiskBytesAfter,
    double Milliseconds);

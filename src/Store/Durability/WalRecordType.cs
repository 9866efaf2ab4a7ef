namespace KvDb.Store.Durability;

/// <summary>Kinds of write-ahead log records (the byte after the checksum in every record header).</summary>
internal enum WalRecordType : byte
{
    /// <summary>A model schema was created.</summary>
    Model = 1,

    /// <summary>A context was created, possibly from a cached prefix.</summary>
    ContextCreate = 2,

    /// <summary>A context was deleted (by a call or its TTL).</summary>
    ContextDelete = 3,

    /// <summary>A context was copied by reference.</summary>
    ContextFork = 4,

    /// <summary>Part of one AppendKv chunk of an open transaction.</summary>
    Chunk = 5,

    /// <summary>A transaction committed: its chunks are acknowledged.</summary>
    Commit = 6,

    /// <summary>A transaction rolled back: its chunks are discarded.</summary>
    Abort = 7,

    /// <summary>A context's TTL expiry or pin changed (the record holds both, as set).</summary>
    ContextUpdate = 9,

    /// <summary>Marks a checkpoint's cut: every record before it is reflected in the checkpoint (except open transactions').</summary>
    CheckpointMarker = 8,

    /// <summary>Not a log record: the framing type of a checkpoint file.</summary>
    Checkpoint = 100,
}

namespace KvDb.Store.Durability;

/// <summary>
/// One write-ahead log record, decoded: the kinds form a closed set, one sealed record per
/// <see cref="WalRecordType"/>. <see cref="WalCodec"/> encodes and decodes every kind (payload layouts there).
/// </summary>
internal abstract record WalRecord
{
    /// <summary>The type byte the record carries in the log.</summary>
    public abstract WalRecordType Type { get; }
}

/// <summary>A model schema was created.</summary>
internal sealed record ModelRecord(ModelSchema Model) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.Model;
}

/// <summary>A context was created; <see cref="SharedPrefix"/> holds the token ids it took from the prefix cache.</summary>
internal sealed record ContextCreateRecord(string Id, string Model, string Namespace, long CreatedUnixMs, long ExpiresAtUnixMs, int[] SharedPrefix) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.ContextCreate;

    /// <summary>Equal field by field, the prefix by content (so an encoded and decoded record equals the original).</summary>
    public bool Equals(ContextCreateRecord? other) =>
        other is not null && Id == other.Id && Model == other.Model && Namespace == other.Namespace && CreatedUnixMs == other.CreatedUnixMs
        && ExpiresAtUnixMs == other.ExpiresAtUnixMs && SharedPrefix.AsSpan().SequenceEqual(other.SharedPrefix);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Id, Model, Namespace, CreatedUnixMs, ExpiresAtUnixMs, SharedPrefix.Length);
}

/// <summary>A context was deleted (by a call or its TTL).</summary>
internal sealed record ContextDeleteRecord(string Id) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.ContextDelete;
}

/// <summary>Context <see cref="Id"/>'s settings as set by UpdateContext: expiry (Unix ms, 0 = never), pin and the pin's tier.</summary>
internal sealed record ContextUpdateRecord(string Id, long ExpiresAtUnixMs, bool Pinned, PinTier PinTier = PinTier.Cpu) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.ContextUpdate;
}

/// <summary>Context <see cref="SourceId"/> was copied by reference to <see cref="Id"/>.</summary>
internal sealed record ContextForkRecord(string SourceId, string Id, long CreatedUnixMs, long ExpiresAtUnixMs) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.ContextFork;
}

/// <summary>
/// Rows [<see cref="Start"/>, Start + n) of one layer appended by transaction <see cref="Transaction"/>: n token ids
/// and the keys and values in wire layout [n, num_kv_heads, head_dim]. A decoded chunk's keys and values alias the
/// bytes it was decoded from (no copy), so they are valid only as long as those are.
/// </summary>
internal sealed record ChunkRecord(long Transaction, string ContextId, int Layer, long Start, int[] TokenIds, ReadOnlyMemory<byte> Keys, ReadOnlyMemory<byte> Values) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.Chunk;

    /// <summary>Equal field by field, arrays and bytes by content (so an encoded and decoded record equals the original).</summary>
    public bool Equals(ChunkRecord? other) =>
        other is not null && Transaction == other.Transaction && ContextId == other.ContextId && Layer == other.Layer && Start == other.Start
        && TokenIds.AsSpan().SequenceEqual(other.TokenIds) && Keys.Span.SequenceEqual(other.Keys.Span) && Values.Span.SequenceEqual(other.Values.Span);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Transaction, ContextId, Layer, Start, TokenIds.Length, Keys.Length, Values.Length);
}

/// <summary>Transaction <see cref="Transaction"/> committed: its chunks are acknowledged.</summary>
internal sealed record CommitRecord(long Transaction, string ContextId) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.Commit;
}

/// <summary>Transaction <see cref="Transaction"/> rolled back: its chunks are discarded.</summary>
internal sealed record AbortRecord(long Transaction, string ContextId) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.Abort;
}

/// <summary>A checkpoint's cut (no payload).</summary>
internal sealed record CheckpointMarkerRecord : WalRecord
{
    /// <summary>The one marker (it has no fields).</summary>
    public static CheckpointMarkerRecord Instance { get; } = new();

    /// <inheritdoc />
    public override WalRecordType Type => WalRecordType.CheckpointMarker;
}

/// <summary>A checksummed record of a type this version does not know (recovery reports and skips it); never encoded.</summary>
internal sealed record UnknownRecord(WalRecordType Type) : WalRecord
{
    /// <inheritdoc />
    public override WalRecordType Type { get; } = Type;
}

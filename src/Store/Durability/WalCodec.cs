using System.Diagnostics.CodeAnalysis;
using KvDb.Kernels;

namespace KvDb.Store.Durability;

/// <summary>
/// The write-ahead log's records, both ways: <see cref="WalRecord"/>s to framed records (<see cref="RecordWriter"/>)
/// and back. Payloads are little-endian; strings are u32 length + UTF-8, arrays u32 count + elements:
/// <list type="bullet">
/// <item>Model: name · layers · query heads · kv heads · head dim (i32s) · dtype u8 · block i32 · scale f32</item>
/// <item>ContextCreate: id · model · namespace · created ms · expires ms · the shared prefix's token ids</item>
/// <item>ContextDelete: id</item>
/// <item>ContextUpdate: id · expires i64 · pinned u8 · pin tier u8 (absent in records of older versions: CPU)</item>
/// <item>ContextFork: source id · new id · created ms · expires ms</item>
/// <item>Chunk: transaction · context id · layer · first position · token ids · keys · values (wire layout)</item>
/// <item>Commit and Abort: transaction · context id</item>
/// <item>CheckpointMarker: empty</item>
/// </list>
/// </summary>
internal static class WalCodec
{
    /// <summary>The payload of <paramref name="record"/> in a writer; finish it with <c>record.Type</c>. The caller disposes the writer.</summary>
    public static RecordWriter Encode(WalRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        switch (record)
        {
            case ModelRecord m:
                {
                    var w = new RecordWriter();
                    WriteModel(w, m.Model);
                    return w;
                }

            case ContextCreateRecord c:
                {
                    var w = new RecordWriter(64 + (c.SharedPrefix.Length * 4));
                    w.WriteString(c.Id);
                    w.WriteString(c.Model);
                    w.WriteString(c.Namespace);
                    w.WriteInt64(c.CreatedUnixMs);
                    w.WriteInt64(c.ExpiresAtUnixMs);
                    w.WriteInts(c.SharedPrefix);
                    return w;
                }

            case ContextDeleteRecord d:
                {
                    var w = new RecordWriter();
                    w.WriteString(d.Id);
                    return w;
                }

            case ContextUpdateRecord u:
                {
                    var w = new RecordWriter();
                    w.WriteString(u.Id);
                    w.WriteInt64(u.ExpiresAtUnixMs);
                    w.WriteByte(u.Pinned ? (byte)1 : (byte)0);
                    w.WriteByte((byte)u.PinTier);
                    return w;
                }

            case ContextForkRecord f:
                {
                    var w = new RecordWriter();
                    w.WriteString(f.SourceId);
                    w.WriteString(f.Id);
                    w.WriteInt64(f.CreatedUnixMs);
                    w.WriteInt64(f.ExpiresAtUnixMs);
                    return w;
                }

            case ChunkRecord c:
                return EncodeChunk(c.Transaction, c.ContextId, c.Layer, c.Start, c.TokenIds, c.Keys.Span, c.Values.Span);
            case CommitRecord c:
                return End(c.Transaction, c.ContextId);
            case AbortRecord a:
                return End(a.Transaction, a.ContextId);
            case CheckpointMarkerRecord:
                return new RecordWriter();
            default:
                throw new ArgumentException($"a {record.Type} record cannot be encoded", nameof(record));
        }
    }

    /// <summary>A Chunk record's payload straight from the appender's spans (the hot path: no <see cref="ChunkRecord"/> and no copy before the log's).</summary>
    public static RecordWriter EncodeChunk(long transaction, string contextId, int layer, long start, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        var w = new RecordWriter(64 + (tokenIds.Length * 4) + keys.Length + values.Length);
        w.WriteInt64(transaction);
        w.WriteString(contextId);
        w.WriteInt32(layer);
        w.WriteInt64(start);
        w.WriteInts(tokenIds);
        w.WriteBytes(keys);
        w.WriteBytes(values);
        return w;
    }

    /// <summary>
    /// Opens one framed record and decodes it. False when its header or checksum is bad (torn or corrupt); throws
    /// <see cref="InvalidDataException"/> when a record that passed its checksum has a malformed payload. A type this
    /// version does not know decodes to <see cref="UnknownRecord"/>. A decoded chunk aliases <paramref name="record"/>.
    /// </summary>
    public static bool TryDecode(ReadOnlyMemory<byte> record, [NotNullWhen(true)] out WalRecord? decoded)
    {
        if (!RecordWriter.TryOpen(record.Span, out WalRecordType type, out ReadOnlySpan<byte> payload))
        {
            decoded = null;
            return false;
        }

        decoded = Decode(type, record.Slice(RecordWriter.HeaderBytes, payload.Length));
        return true;
    }

    /// <summary>Decodes the payload of a record of <paramref name="type"/>; throws <see cref="InvalidDataException"/> when it is malformed.</summary>
    public static WalRecord Decode(WalRecordType type, ReadOnlyMemory<byte> payload)
    {
        var r = new RecordReader(payload.Span);
        switch (type)
        {
            case WalRecordType.Model:
                return new ModelRecord(ReadModel(ref r));
            case WalRecordType.ContextCreate:
                {
                    string id = r.ReadString();
                    string model = r.ReadString();
                    string ns = r.ReadString();
                    long created = r.ReadInt64();
                    long expires = r.ReadInt64();
                    return new ContextCreateRecord(id, model, ns, created, expires, r.ReadInts());
                }

            case WalRecordType.ContextDelete:
                return new ContextDeleteRecord(r.ReadString());
            case WalRecordType.ContextUpdate:
                {
                    string id = r.ReadString();
                    long expires = r.ReadInt64();
                    bool pinned = r.ReadByte() != 0;
                    PinTier tier = r.AtEnd ? PinTier.Cpu : (PinTier)r.ReadByte();
                    return new ContextUpdateRecord(id, expires, pinned, Enum.IsDefined(tier) ? tier : PinTier.Cpu);
                }

            case WalRecordType.ContextFork:
                {
                    string source = r.ReadString();
                    string id = r.ReadString();
                    long created = r.ReadInt64();
                    return new ContextForkRecord(source, id, created, r.ReadInt64());
                }

            case WalRecordType.Chunk:
                {
                    long txn = r.ReadInt64();
                    string contextId = r.ReadString();
                    int layer = r.ReadInt32();
                    long start = r.ReadInt64();
                    int[] ids = r.ReadInts();
                    ReadOnlyMemory<byte> keys = ReadBytes(ref r, payload);
                    ReadOnlyMemory<byte> values = ReadBytes(ref r, payload);
                    return new ChunkRecord(txn, contextId, layer, start, ids, keys, values);
                }

            case WalRecordType.Commit:
                {
                    long txn = r.ReadInt64();
                    return new CommitRecord(txn, r.ReadString());
                }

            case WalRecordType.Abort:
                {
                    long txn = r.ReadInt64();
                    return new AbortRecord(txn, r.ReadString());
                }

            case WalRecordType.CheckpointMarker:
                return CheckpointMarkerRecord.Instance;
            default:
                return new UnknownRecord(type);
        }
    }

    /// <summary>A model schema as the Model record and checkpoint files store it.</summary>
    public static void WriteModel(RecordWriter w, ModelSchema m)
    {
        w.WriteString(m.Name);
        w.WriteInt32(m.NumLayers);
        w.WriteInt32(m.NumQueryHeads);
        w.WriteInt32(m.NumKvHeads);
        w.WriteInt32(m.HeadDim);
        w.WriteByte((byte)m.DType);
        w.WriteInt32(m.BlockSize);
        w.WriteSingle(m.SoftmaxScale);
    }

    /// <summary>Reads what <see cref="WriteModel"/> wrote.</summary>
    public static ModelSchema ReadModel(ref RecordReader r) =>
        new(r.ReadString(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), (KvDType)r.ReadByte(), r.ReadInt32(), r.ReadSingle());

    private static RecordWriter End(long transaction, string contextId)
    {
        var w = new RecordWriter();
        w.WriteInt64(transaction);
        w.WriteString(contextId);
        return w;
    }

    /// <summary>A length-prefixed byte field as a slice of <paramref name="payload"/> (the span the reader reads), not a copy.</summary>
    private static ReadOnlyMemory<byte> ReadBytes(ref RecordReader r, ReadOnlyMemory<byte> payload)
    {
        int length = r.ReadBytes().Length;
        return payload.Slice(r.Position - length, length);
    }
}

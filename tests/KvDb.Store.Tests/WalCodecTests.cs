using KvDb.Kernels;
using KvDb.Store.Durability;

namespace KvDb.Store.Tests;

/// <summary>
/// Every write-ahead log record kind survives encode → frame → decode unchanged, and a framed record that was
/// cut short or had a bit flipped is rejected rather than decoded.
/// </summary>
public sealed class WalCodecTests
{
    [Fact]
    public void Model_record_round_trips()
    {
        RoundTrip(new ModelRecord(ModelSchema.Normalize(new ModelSchema("llama-3-8b", 32, 32, 8, 128, KvDType.BF16, 0, 0))));
        RoundTrip(new ModelRecord(new ModelSchema("f16 model ü", 1, 4, 4, 64, KvDType.F16, 16, 0.125f)));
    }

    [Fact]
    public void ContextCreate_record_round_trips()
    {
        RoundTrip(new ContextCreateRecord("ctx-1", "llama", "tenant/ns ✓", 1_700_000_000_123, 1_700_000_360_123, [1, -2, 50000, int.MaxValue]));
        RoundTrip(new ContextCreateRecord("", "m", "", 0, 0, []));
    }

    [Fact]
    public void ContextDelete_record_round_trips() => RoundTrip(new ContextDeleteRecord("ctx-ü"));

    [Fact]
    public void ContextUpdate_record_round_trips()
    {
        RoundTrip(new ContextUpdateRecord("ctx-ü", 1_700_000_360_123, true));
        RoundTrip(new ContextUpdateRecord("c", 0, false));
        RoundTrip(new ContextUpdateRecord("g", 5, true, PinTier.Gpu));
        RoundTrip(new ContextUpdateRecord("d", 5, true, PinTier.Disk));
    }

    [Fact]
    public void A_ContextUpdate_record_of_the_previous_format_is_a_cpu_pin()
    {
        // Before pin tiers the payload ended after the pinned byte.
        using var w = new RecordWriter();
        w.WriteString("old");
        w.WriteInt64(77);
        w.WriteByte(1);
        Assert.Equal(new ContextUpdateRecord("old", 77, true, PinTier.Cpu), Decode(w.Finish(WalRecordType.ContextUpdate).ToArray()));
    }

    [Fact]
    public void ContextFork_record_round_trips() => RoundTrip(new ContextForkRecord("source", "copy", 1234, -1));

    [Fact]
    public void Chunk_record_round_trips()
    {
        byte[] keys = [.. Enumerable.Range(0, 96).Select(i => (byte)i)];
        byte[] values = [.. Enumerable.Range(0, 96).Select(i => (byte)(255 - i))];
        var chunk = new ChunkRecord(long.MaxValue - 3, "ctx", 7, 4096, [10, 20, 30], keys, values);
        RoundTrip(chunk);
        RoundTrip(chunk with { TokenIds = [], Keys = ReadOnlyMemory<byte>.Empty, Values = ReadOnlyMemory<byte>.Empty });

        // The span path the appender takes writes the same bytes as the record.
        using RecordWriter direct = WalCodec.EncodeChunk(chunk.Transaction, chunk.ContextId, chunk.Layer, chunk.Start, chunk.TokenIds, keys, values);
        Assert.Equal(Frame(chunk), direct.Finish(WalRecordType.Chunk).ToArray());
    }

    [Fact]
    public void Commit_and_abort_records_round_trip_and_differ()
    {
        RoundTrip(new CommitRecord(42, "ctx"));
        RoundTrip(new AbortRecord(42, "ctx"));
        Assert.NotEqual(Frame(new CommitRecord(42, "ctx")), Frame(new AbortRecord(42, "ctx")));
        Assert.IsType<AbortRecord>(Decode(Frame(new AbortRecord(42, "ctx"))));
    }

    [Fact]
    public void CheckpointMarker_record_round_trips()
    {
        byte[] framed = Frame(CheckpointMarkerRecord.Instance);
        Assert.Equal(RecordWriter.HeaderBytes, framed.Length);
        RoundTrip(CheckpointMarkerRecord.Instance);
    }

    [Fact]
    public void Payload_layout_is_the_documented_one()
    {
        // Commit: txn i64 · context id (u32 length + UTF-8), little-endian (docs/storage.md "WAL records").
        byte[] framed = Frame(new CommitRecord(0x0102030405060708, "ab"));
        Assert.Equal([0x4B, 0x56, 0x57, 0x31], framed[..4]);
        Assert.Equal((byte)WalRecordType.Commit, framed[12]);
        Assert.Equal([8, 7, 6, 5, 4, 3, 2, 1, 2, 0, 0, 0, (byte)'a', (byte)'b'], framed[RecordWriter.HeaderBytes..]);
    }

    [Fact]
    public void Unknown_type_decodes_to_an_unknown_record()
    {
        using var w = new RecordWriter();
        w.WriteInt64(5);
        Assert.Equal(new UnknownRecord((WalRecordType)42), Decode(w.Finish((WalRecordType)42).ToArray()));
    }

    [Fact]
    public void Truncated_or_corrupted_records_are_rejected()
    {
        WalRecord[] records =
        [
            new ModelRecord(TestData.Small()),
            new ContextCreateRecord("c", "m", "ns", 1, 2, [1, 2, 3]),
            new ContextDeleteRecord("c"),
            new ContextForkRecord("a", "b", 1, 2),
            new ChunkRecord(9, "c", 1, 16, [4, 5], new byte[32], new byte[32]),
            new CommitRecord(9, "c"),
            new AbortRecord(9, "c"),
            CheckpointMarkerRecord.Instance,
        ];
        foreach (WalRecord r in records)
        {
            byte[] framed = Frame(r);
            for (int length = 0; length < framed.Length; length++)
            {
                Assert.False(WalCodec.TryDecode(framed.AsMemory(0, length), out _), $"{r.Type} cut to {length} of {framed.Length} bytes");
            }

            for (int i = 0; i < framed.Length; i++)
            {
                byte[] bad = (byte[])framed.Clone();
                bad[i] ^= 0x10;
                Assert.False(WalCodec.TryDecode(bad, out _), $"{r.Type} with byte {i} flipped");
            }
        }
    }

    [Fact]
    public void A_checksummed_but_short_payload_is_malformed()
    {
        // A writer bug, not disk damage: the frame is intact, the payload ends inside the keys field.
        byte[] framed = Frame(new ChunkRecord(9, "c", 1, 16, [4, 5], new byte[32], new byte[32]));
        using var w = new RecordWriter();
        foreach (byte b in framed.AsSpan(RecordWriter.HeaderBytes, framed.Length - RecordWriter.HeaderBytes - 40))
        {
            w.WriteByte(b);
        }

        byte[] reframed = w.Finish(WalRecordType.Chunk).ToArray();
        Assert.Throws<InvalidDataException>(() => WalCodec.TryDecode(reframed, out _));
    }

    private static void RoundTrip(WalRecord record)
    {
        WalRecord decoded = Decode(Frame(record));
        Assert.Equal(record.Type, decoded.Type);
        Assert.Equal(record, decoded);
        Assert.Equal(record.GetHashCode(), decoded.GetHashCode());
    }

    private static byte[] Frame(WalRecord record)
    {
        using RecordWriter w = WalCodec.Encode(record);
        return w.Finish(record.Type).ToArray();
    }

    private static WalRecord Decode(byte[] framed)
    {
        Assert.True(WalCodec.TryDecode(framed, out WalRecord? decoded));
        return decoded;
    }
}

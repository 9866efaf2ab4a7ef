using KvDb.Store.Durability;

namespace KvDb.Fuzz.Targets;

/// <summary>
/// WAL records: the framed record through <see cref="WalCodec.TryDecode"/> (header and checksum), then its payload
/// through <see cref="WalCodec.Decode"/> as if the checksum had passed, so mutations reach the payload decoder that a
/// checksum would otherwise keep them from. Bad input: false, or <see cref="InvalidDataException"/>.
/// </summary>
internal static class WalTarget
{
    public const string Name = "wal";

    public static void Run(ReadOnlySpan<byte> data)
    {
        byte[] record = data.ToArray();
        try
        {
            WalCodec.TryDecode(record, out _);
        }
        catch (InvalidDataException)
        {
        }

        if (record.Length < RecordWriter.HeaderBytes)
        {
            return;
        }

        try
        {
            WalCodec.Decode((WalRecordType)record[12], record.AsMemory(RecordWriter.HeaderBytes));
        }
        catch (InvalidDataException)
        {
        }
    }
}

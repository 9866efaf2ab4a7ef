using System.Buffers.Binary;
using System.IO.Hashing;

namespace KvDb.Store.Durability;

/// <summary>
/// One disk-tier record, both ways, as pure functions over spans (so the check that guards every disk read can be
/// fuzzed without a FasterLog): magic "KVB1" · layer i32 · chain u128 · content XxHash3 u64 · length i32 ·
/// 4 zero bytes · the block's bytes.
/// </summary>
internal static class BlockRecord
{
    public const int HeaderBytes = 40;
    private const uint Magic = 0x3142564B; // "KVB1" little-endian

    /// <summary>Writes the record of a block into <paramref name="record"/> (exactly <see cref="HeaderBytes"/> + the block's length).</summary>
    public static void Write(Span<byte> record, BlockAddress address, ulong checksum, ReadOnlySpan<byte> blockBytes)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(record, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(record[4..], address.Layer);
        BinaryPrimitives.WriteUInt128LittleEndian(record[8..], address.Chain);
        BinaryPrimitives.WriteUInt64LittleEndian(record[24..], checksum);
        BinaryPrimitives.WriteInt32LittleEndian(record[32..], blockBytes.Length);
        BinaryPrimitives.WriteInt32LittleEndian(record[36..], 0);
        blockBytes.CopyTo(record[HeaderBytes..]);
    }

    /// <summary>
    /// True when <paramref name="record"/> is the record of the block at <paramref name="address"/> with content
    /// <paramref name="checksum"/> and <paramref name="blockBytes"/> bytes, its content matching the checksum; then
    /// <paramref name="block"/> is its content. False for anything else (torn, overwritten, misdirected); never throws.
    /// </summary>
    public static bool TryOpen(ReadOnlySpan<byte> record, BlockAddress address, ulong checksum, int blockBytes, out ReadOnlySpan<byte> block)
    {
        block = default;
        if (blockBytes < 0
            || record.Length != HeaderBytes + (long)blockBytes
            || BinaryPrimitives.ReadUInt32LittleEndian(record) != Magic
            || BinaryPrimitives.ReadInt32LittleEndian(record[4..]) != address.Layer
            || BinaryPrimitives.ReadUInt128LittleEndian(record[8..]) != address.Chain
            || BinaryPrimitives.ReadUInt64LittleEndian(record[24..]) != checksum
            || BinaryPrimitives.ReadInt32LittleEndian(record[32..]) != blockBytes
            || XxHash3.HashToUInt64(record[HeaderBytes..]) != checksum)
        {
            return false;
        }

        block = record[HeaderBytes..];
        return true;
    }
}

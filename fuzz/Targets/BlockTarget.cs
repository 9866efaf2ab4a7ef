using System.Buffers.Binary;
using KvDb.Store;
using KvDb.Store.Durability;

namespace KvDb.Fuzz.Targets;

/// <summary>
/// Disk-tier records: <see cref="BlockRecord.TryOpen"/> against the address, checksum and length the record's own
/// header claims (so mutations of the content reach the checksum) and against a fixed expectation. Bad input: false;
/// it may throw nothing.
/// </summary>
internal static class BlockTarget
{
    public const string Name = "block";

    public static void Run(ReadOnlySpan<byte> data)
    {
        BlockRecord.TryOpen(data, new BlockAddress(UInt128.One, 0), 0, 64, out _);
        if (data.Length < BlockRecord.HeaderBytes)
        {
            return;
        }

        var claimed = new BlockAddress(BinaryPrimitives.ReadUInt128LittleEndian(data[8..]), BinaryPrimitives.ReadInt32LittleEndian(data[4..]));
        ulong checksum = BinaryPrimitives.ReadUInt64LittleEndian(data[24..]);
        if (BlockRecord.TryOpen(data, claimed, checksum, BinaryPrimitives.ReadInt32LittleEndian(data[32..]), out ReadOnlySpan<byte> block)
            && block.Length != data.Length - BlockRecord.HeaderBytes)
        {
            throw new InvalidOperationException($"an opened record's block has {block.Length} bytes, not the {data.Length - BlockRecord.HeaderBytes} after its header");
        }
    }
}

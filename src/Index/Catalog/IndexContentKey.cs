using System.Buffers.Binary;
using System.Security.Cryptography;
using KvDb.Store;

namespace KvDb.Index.Catalog;

/// <summary>
/// Names the content of a layer's first n full blocks, so an index over them can be found by any context
/// whose blocks start the same way: key(i) = SHA-256("kvdb.v1.index" ‖ key(i−1) ‖ chain(i) ‖ layer ‖ checksum(i)),
/// truncated to 16 bytes, key(−1) = 0. The chain value commits to the model, the namespace and every token
/// id; the content checksums to the bytes — so contexts whose blocks hold the same tokens but different
/// bytes (the store keeps those private) never share an index.
/// </summary>
public static class IndexContentKey
{
    private static ReadOnlySpan<byte> Tag => "kvdb.v1.index"u8;

    /// <summary>The key of a prefix that ends with the block (<paramref name="address"/>, <paramref name="checksum"/>) after the prefix named <paramref name="previous"/>.</summary>
    public static UInt128 Next(UInt128 previous, BlockAddress address, ulong checksum)
    {
        Span<byte> s = stackalloc byte[13 + 16 + 16 + 4 + 8];
        int o = 0;
        Tag.CopyTo(s);
        o += Tag.Length;
        BinaryPrimitives.WriteUInt128LittleEndian(s[o..], previous);
        o += 16;
        BinaryPrimitives.WriteUInt128LittleEndian(s[o..], address.Chain);
        o += 16;
        BinaryPrimitives.WriteInt32LittleEndian(s[o..], address.Layer);
        o += 4;
        BinaryPrimitives.WriteUInt64LittleEndian(s[o..], checksum);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(s, digest);
        return BinaryPrimitives.ReadUInt128LittleEndian(digest);
    }
}

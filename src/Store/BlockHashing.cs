using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace KvDb.Store;

/// <summary>
/// The hash chain that addresses full blocks (as vLLM's prefix cache does). SHA-256 truncated to its first
/// 16 bytes, read as a little-endian 128-bit integer, over little-endian encodings:
/// root = H("kvdb.v1.root" ‖ u32 len ‖ model UTF-8 ‖ u32 len ‖ namespace UTF-8);
/// chain(i) = H("kvdb.v1.block" ‖ chain(i−1) as 16 LE bytes ‖ u32 n ‖ n × i32 token ids).
/// A cryptographic hash so that no tenant can craft a collision that aliases another prefix's KV.
/// </summary>
public static class BlockHashing
{
    private static ReadOnlySpan<byte> RootTag => "kvdb.v1.root"u8;

    private static ReadOnlySpan<byte> BlockTag => "kvdb.v1.block"u8;

    /// <summary>The chain's start for a model and namespace (the namespace salts every address below it).</summary>
    public static UInt128 Root(string model, string ns)
    {
        ArgumentNullException.ThrowIfNull(model);
        ns ??= string.Empty;
        int modelBytes = Encoding.UTF8.GetByteCount(model);
        int nsBytes = Encoding.UTF8.GetByteCount(ns);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(RootTag.Length + 8 + modelBytes + nsBytes);
        try
        {
            Span<byte> s = buffer;
            int o = 0;
            RootTag.CopyTo(s);
            o += RootTag.Length;
            BinaryPrimitives.WriteUInt32LittleEndian(s[o..], (uint)modelBytes);
            o += 4;
            o += Encoding.UTF8.GetBytes(model, s[o..]);
            BinaryPrimitives.WriteUInt32LittleEndian(s[o..], (uint)nsBytes);
            o += 4;
            o += Encoding.UTF8.GetBytes(ns, s[o..]);
            return Hash(s[..o]);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The chain value of the block holding <paramref name="tokens"/> after the block whose value is <paramref name="parent"/>.</summary>
    public static UInt128 Next(UInt128 parent, ReadOnlySpan<int> tokens)
    {
        int length = BlockTag.Length + 16 + 4 + (4 * tokens.Length);
        byte[]? rented = length > 2048 ? ArrayPool<byte>.Shared.Rent(length) : null;
        Span<byte> s = rented ?? stackalloc byte[length];
        try
        {
            int o = 0;
            BlockTag.CopyTo(s);
            o += BlockTag.Length;
            BinaryPrimitives.WriteUInt128LittleEndian(s[o..], parent);
            o += 16;
            BinaryPrimitives.WriteUInt32LittleEndian(s[o..], (uint)tokens.Length);
            o += 4;
            foreach (int t in tokens)
            {
                BinaryPrimitives.WriteInt32LittleEndian(s[o..], t);
                o += 4;
            }

            return Hash(s[..o]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Chain values of every full block of <paramref name="tokens"/> (⌊n / blockSize⌋ values) below <paramref name="root"/>.</summary>
    public static UInt128[] Chain(UInt128 root, ReadOnlySpan<int> tokens, int blockSize)
    {
        var chain = new UInt128[tokens.Length / blockSize];
        UInt128 h = root;
        for (int i = 0; i < chain.Length; i++)
        {
            h = Next(h, tokens.Slice(i * blockSize, blockSize));
            chain[i] = h;
        }

        return chain;
    }

    /// <summary>The 16 little-endian bytes as 32 lowercase hex digits (byte order, so it matches a hex dump of the SHA-256 prefix).</summary>
    public static string ToHex(UInt128 value)
    {
        Span<byte> b = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128LittleEndian(b, value);
        return Convert.ToHexStringLower(b);
    }

    private static UInt128 Hash(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(data, digest);
        return BinaryPrimitives.ReadUInt128LittleEndian(digest);
    }
}

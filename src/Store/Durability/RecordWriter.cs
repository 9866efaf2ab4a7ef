using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace KvDb.Store.Durability;

/// <summary>
/// Builds one checksummed record in a pooled buffer: header = magic u32 · XxHash3 u64 of everything after it ·
/// type u8 · 3 zero bytes · payload length u32; then the little-endian payload. Dispose returns the buffer.
/// </summary>
internal sealed class RecordWriter : IDisposable
{
    public const int HeaderBytes = 20;
    public const uint WalMagic = 0x3157564B; // "KVW1" little-endian

    private byte[] _buffer;
    private int _length = HeaderBytes;

    public RecordWriter(int capacity = 256)
    {
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(capacity, 64) + HeaderBytes);
    }

    public void WriteByte(byte v) => Reserve(1)[0] = v;

    public void WriteInt32(int v) => BinaryPrimitives.WriteInt32LittleEndian(Reserve(4), v);

    public void WriteInt64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Reserve(8), v);

    public void WriteUInt64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), v);

    public void WriteSingle(float v) => BinaryPrimitives.WriteSingleLittleEndian(Reserve(4), v);

    public void WriteString(string s)
    {
        int n = Encoding.UTF8.GetByteCount(s);
        WriteInt32(n);
        Encoding.UTF8.GetBytes(s, Reserve(n));
    }

    public void WriteInts(ReadOnlySpan<int> values)
    {
        WriteInt32(values.Length);
        Span<byte> dst = Reserve(values.Length * 4);
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(dst[(i * 4)..], values[i]);
        }
    }

    public void WriteBytes(ReadOnlySpan<byte> bytes)
    {
        WriteInt32(bytes.Length);
        bytes.CopyTo(Reserve(bytes.Length));
    }

    /// <summary>Fills the header and returns the finished record.</summary>
    public ReadOnlySpan<byte> Finish(WalRecordType type)
    {
        Span<byte> s = _buffer.AsSpan(0, _length);
        BinaryPrimitives.WriteUInt32LittleEndian(s, WalMagic);
        s[12] = (byte)type;
        s[13] = s[14] = s[15] = 0;
        BinaryPrimitives.WriteInt32LittleEndian(s[16..], _length - HeaderBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(s[4..], XxHash3.HashToUInt64(s[12..]));
        return s;
    }

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }

    /// <summary>Checks a record's header and checksum; on success returns its type and payload.</summary>
    public static bool TryOpen(ReadOnlySpan<byte> record, out WalRecordType type, out ReadOnlySpan<byte> payload)
    {
        type = 0;
        payload = default;
        if (record.Length < HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(record) != WalMagic)
        {
            return false;
        }

        int length = BinaryPrimitives.ReadInt32LittleEndian(record[16..]);
        if (length < 0 || length > record.Length - HeaderBytes)
        {
            return false;
        }

        if (XxHash3.HashToUInt64(record[12..(HeaderBytes + length)]) != BinaryPrimitives.ReadUInt64LittleEndian(record[4..]))
        {
            return false;
        }

        type = (WalRecordType)record[12];
        payload = record.Slice(HeaderBytes, length);
        return true;
    }

    private Span<byte> Reserve(int n)
    {
        if (_length + n > _buffer.Length)
        {
            byte[] bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _length + n));
            _buffer.AsSpan(0, _length).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }

        Span<byte> s = _buffer.AsSpan(_length, n);
        _length += n;
        return s;
    }
}

using System.Buffers.Binary;
using System.Text;

namespace KvDb.Store.Durability;

/// <summary>Reads a little-endian record payload written by <see cref="RecordWriter"/>; throws <see cref="InvalidDataException"/> past the end.</summary>
internal ref struct RecordReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _offset;

    public RecordReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _offset = 0;
    }

    public readonly bool AtEnd => _offset == _data.Length;

    /// <summary>Bytes read so far (a field just read ends here).</summary>
    public readonly int Position => _offset;

    public byte ReadByte() => Take(1)[0];

    public int ReadInt32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long ReadInt64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public ulong ReadUInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public float ReadSingle() => BinaryPrimitives.ReadSingleLittleEndian(Take(4));

    public string ReadString() => Encoding.UTF8.GetString(Take(Count(1)));

    public int[] ReadInts()
    {
        int n = Count(4);
        ReadOnlySpan<byte> src = Take(n * 4);
        var values = new int[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(i * 4)..]);
        }

        return values;
    }

    public ReadOnlySpan<byte> ReadBytes() => Take(Count(1));

    private int Count(int elementBytes)
    {
        int n = ReadInt32();
        if (n < 0 || (long)n * elementBytes > _data.Length - _offset)
        {
            throw new InvalidDataException("record length field out of range");
        }

        return n;
    }

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n > _data.Length - _offset)
        {
            throw new InvalidDataException("record ends early");
        }

        ReadOnlySpan<byte> s = _data.Slice(_offset, n);
        _offset += n;
        return s;
    }
}

using System.Runtime.InteropServices;
using System.Text;

namespace KvDb.Index;

/// <summary>
/// The persisted layout shared by every family: magic, format version, canonical spec, dimension, then
/// the family's payload of little-endian arrays. Loading re-creates the family from the spec.
/// </summary>
internal static class IndexFormat
{
    public const uint Magic = 0x5844494B; // "KIDX"
    public const int Version = 1;

    public static BinaryWriter Writer(Stream stream) => new(stream, Encoding.UTF8, leaveOpen: true);

    public static BinaryReader Reader(Stream stream) => new(stream, Encoding.UTF8, leaveOpen: true);

    public static void WriteHeader(BinaryWriter w, string spec, int dimension)
    {
        w.Write(Magic);
        w.Write(Version);
        w.Write(spec);
        w.Write(dimension);
    }

    public static (string Spec, int Dimension) ReadHeader(BinaryReader r)
    {
        if (r.ReadUInt32() != Magic)
        {
            throw new InvalidDataException("not a KvDb index stream (bad magic)");
        }

        int version = r.ReadInt32();
        if (version != Version)
        {
            throw new InvalidDataException($"index format version {version} is not supported (expected {Version})");
        }

        string spec = r.ReadString();
        int dimension = r.ReadInt32();
        return (spec, dimension);
    }

    public static void WriteArray<T>(BinaryWriter w, ReadOnlySpan<T> values)
        where T : unmanaged
    {
        w.Write(values.Length);
        w.Write(MemoryMarshal.AsBytes(values));
    }

    public static T[] ReadArray<T>(BinaryReader r)
        where T : unmanaged
    {
        int length = r.ReadInt32();
        if (length < 0)
        {
            throw new InvalidDataException("negative array length in index stream");
        }

        var values = new T[length];
        Span<byte> bytes = MemoryMarshal.AsBytes(values.AsSpan());
        while (!bytes.IsEmpty)
        {
            int read = r.Read(bytes);
            if (read <= 0)
            {
                throw new EndOfStreamException("index stream ended inside an array");
            }

            bytes = bytes[read..];
        }

        return values;
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace KvDb.Index;

/// <summary>
/// The persisted layout shared by every family: magic, format version, canonical spec, dimension, then
/// the family's payload of little-endian arrays. Loading re-creates the family from the spec. The version
/// is per family, so a change to one family's payload refuses only that family's old files.
/// </summary>
internal static class IndexFormat
{
    public const uint Magic = 0x5844494B; // "KIDX"

    /// <summary>The payload version written and accepted for <paramref name="family"/> (registered in <see cref="IndexFamilies"/>).</summary>
    public static int VersionOf(string family) => IndexFamilies.Get(family).FormatVersion;

    private static int MaxVersion()
    {
        int max = 1;
        foreach (IndexFamily f in IndexFamilies.All)
        {
            max = Math.Max(max, f.FormatVersion);
        }

        return max;
    }

    public static BinaryWriter Writer(Stream stream) => new(stream, Encoding.UTF8, leaveOpen: true);

    public static BinaryReader Reader(Stream stream) => new(stream, Encoding.UTF8, leaveOpen: true);

    public static void WriteHeader(BinaryWriter w, string spec, int dimension)
    {
        w.Write(Magic);
        w.Write(VersionOf(IndexSpec.Parse(spec).Family));
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
        if (version < 1 || version > MaxVersion())
        {
            throw new InvalidDataException($"index format version {version} is not supported (expected 1 to {MaxVersion()})");
        }

        string spec = ReadString(r);
        int expected;
        try
        {
            expected = VersionOf(IndexSpec.Parse(spec).Family);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"index stream names an unknown spec \"{spec}\": {e.Message}", e);
        }

        if (version != expected)
        {
            throw new InvalidDataException($"index format version {version} of \"{spec}\" is not supported (expected {expected}); rebuild the index");
        }

        int dimension = r.ReadInt32();
        return (spec, dimension);
    }

    /// <summary>
    /// A BinaryWriter string; a corrupt length prefix is <see cref="InvalidDataException"/> (BinaryReader says
    /// FormatException or, for a negative length, IOException; the first no caller of a file read expected: a torn .kix header stopped the catalog's start-up
    /// collection; found by fuzzing).
    /// </summary>
    public static string ReadString(BinaryReader r)
    {
        try
        {
            return r.ReadString();
        }
        catch (Exception e) when (e is FormatException || e.GetType() == typeof(IOException))
        {
            // A negative length is a plain IOException from BinaryReader; EndOfStreamException (a subclass) passes as it is.
            throw new InvalidDataException("a string's length prefix in the index stream is corrupt", e);
        }
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

        // A length the stream cannot hold is refused before it sizes an allocation (a flipped bit asked for GiBs, and past
        // 2 GiB of bytes the span below overflowed: OverflowException, which no loader expects; found by fuzzing).
        long bytesNeeded = (long)length * Unsafe.SizeOf<T>();
        if (bytesNeeded > int.MaxValue || (r.BaseStream.CanSeek && bytesNeeded > r.BaseStream.Length - r.BaseStream.Position))
        {
            throw new EndOfStreamException($"index stream ends before its array of {length} elements");
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

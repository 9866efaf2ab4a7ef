using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Hashing;
using System.Text;

using KvDb.Store;

namespace KvDb.Index.Catalog;

/// <summary>
/// Shared index segments persisted under the store's data directory (DIR/indexes), one file per
/// (content key, layer, spec): written to a temp file, fsynced and renamed, with an XxHash3-64 trailer over
/// everything before it. A file that fails its checksum, has another format version or does not describe
/// what its name promises is moved aside (NAME.corrupt-TIMESTAMP), reported and never served.
/// Layout (little-endian): magic "KIXF" · version i32 · layer i32 · kv heads i32 · head dim i32 · block size i32 ·
/// spec (BinaryWriter string) · content key u128 · end block chain u128 · end block checksum u64 · end token i64 ·
/// sample queries i32 · per KV head (length i64 · IKeyIndex.Save bytes) · checksum u64.
/// </summary>
internal sealed class IndexSegmentFiles
{
    /// <summary>Format version written; any other is moved aside and rebuilt.</summary>
    public const int Version = 1;

    private const uint Magic = 0x4658494B; // "KIXF"
    private const string Extension = ".kix";
    private readonly string _directory;
    private readonly ConcurrentDictionary<string, byte> _present = new(StringComparer.Ordinal);

    /// <summary>Opens (creating) <paramref name="directory"/>, dropping temp files of interrupted writes.</summary>
    public IndexSegmentFiles(string directory)
    {
        _directory = directory;
        Directory.CreateDirectory(directory);
        foreach (string temp in Directory.EnumerateFiles(directory, "*" + Extension + ".tmp*"))
        {
            File.Delete(temp);
        }

        foreach (string file in Directory.EnumerateFiles(directory, "*" + Extension))
        {
            _present[Path.GetFileName(file)] = 0;
        }
    }

    /// <summary>The folder the files live in.</summary>
    public string DirectoryPath => _directory;

    /// <summary>Index files present.</summary>
    public int Count => _present.Count;

    /// <summary>The file name of a segment: layer, a hash of the spec, and the content key.</summary>
    public static string FileName(UInt128 key, int layer, string spec) =>
        string.Create(CultureInfo.InvariantCulture, $"L{layer}-{XxHash3.HashToUInt64(Encoding.UTF8.GetBytes(spec)):x16}-{BlockHashing.ToHex(key)}{Extension}");

    /// <summary>True when a file for that segment exists (it may still turn out unreadable).</summary>
    public bool Has(UInt128 key, int layer, string spec) => _present.ContainsKey(FileName(key, layer, spec));

    /// <summary>Writes a shareable segment atomically (temp file, fsync, rename).</summary>
    public void Save(IndexSegment segment, int layer, ModelSchema model)
    {
        UInt128 key = segment.ContentKey ?? throw new ArgumentException("only shareable segments (with a content key) are persisted", nameof(segment));
        string name = FileName(key, layer, segment.Spec);
        string path = Path.Combine(_directory, name);
        string temp = path + ".tmp" + Environment.CurrentManagedThreadId.ToString(CultureInfo.InvariantCulture);
        var hash = new XxHash3();
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            using var buffer = new MemoryStream();
            using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
            {
                w.Write(Magic);
                w.Write(Version);
                w.Write(layer);
                w.Write(model.NumKvHeads);
                w.Write(model.HeadDim);
                w.Write(model.BlockSize);
                w.Write(segment.Spec);
                WriteUInt128(w, key);
                WriteUInt128(w, segment.EndAddress.Chain);
                w.Write(segment.EndChecksum);
                w.Write(segment.EndToken);
                w.Write(segment.SampleQueries);
            }

            Emit(file, hash, buffer);
            for (int kv = 0; kv < segment.KvHeads; kv++)
            {
                buffer.SetLength(0);
                segment[kv].Save(buffer);
                var length = new MemoryStream();
                using (var w = new BinaryWriter(length, Encoding.UTF8, leaveOpen: true))
                {
                    w.Write(buffer.Length);
                }

                Emit(file, hash, length);
                Emit(file, hash, buffer);
            }

            Span<byte> trailer = stackalloc byte[8];
            BitConverter.TryWriteBytes(trailer, hash.GetCurrentHashAsUInt64());
            file.Write(trailer);
            file.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
        _present[name] = 0;
    }

    /// <summary>
    /// Loads the segment for <paramref name="key"/>; throws <see cref="InvalidDataException"/> saying what is wrong
    /// with the file when it fails its checksum, has another version or does not match the request.
    /// </summary>
    public IndexSegment Load(UInt128 key, int layer, string spec, ModelSchema model)
    {
        string path = Path.Combine(_directory, FileName(key, layer, spec));
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return Read(file, key, layer, spec, model);
    }

    /// <summary>
    /// Reads a segment file's bytes from the start of <paramref name="file"/> (seekable), checking them against what
    /// the caller expects; throws <see cref="InvalidDataException"/>, <see cref="EndOfStreamException"/> or
    /// <see cref="ArgumentException"/> (an index payload a family refuses) for a file that is not that segment.
    /// </summary>
    public static IndexSegment Read(Stream file, UInt128 key, int layer, string spec, ModelSchema model)
    {
        if (file.Length < 8)
        {
            throw new InvalidDataException("the file is shorter than its checksum");
        }

        var hash = new XxHash3();
        var chunk = new byte[1 << 16];
        long left = file.Length - 8;
        while (left > 0)
        {
            int read = file.Read(chunk, 0, (int)Math.Min(chunk.Length, left));
            if (read <= 0)
            {
                throw new InvalidDataException("the file ended early");
            }

            hash.Append(chunk.AsSpan(0, read));
            left -= read;
        }

        Span<byte> trailer = stackalloc byte[8];
        file.ReadExactly(trailer);
        if (BitConverter.ToUInt64(trailer) != hash.GetCurrentHashAsUInt64())
        {
            throw new InvalidDataException("checksum mismatch");
        }

        file.Position = 0;
        using var r = new BinaryReader(file, Encoding.UTF8, leaveOpen: true);
        Header h = ReadHeader(r);
        if (h.Layer != layer || h.KvHeads != model.NumKvHeads || h.HeadDim != model.HeadDim || h.BlockSize != model.BlockSize || h.Spec != spec || h.Key != key)
        {
            throw new InvalidDataException($"the file describes layer {h.Layer}, spec \"{h.Spec}\", {h.KvHeads}×{h.HeadDim} heads, block {h.BlockSize}, not what its name says");
        }

        var heads = new IKeyIndex[h.KvHeads];
        try
        {
            for (int kv = 0; kv < heads.Length; kv++)
            {
                long length = r.ReadInt64();
                long start = file.Position;
                if (length < 0 || start + length > file.Length - 8)
                {
                    throw new InvalidDataException($"KV head {kv}'s index length {length} runs past the file");
                }

                heads[kv] = IndexFactory.Load(file);
                if (heads[kv].Spec.Length == 0 || heads[kv].Dimension != model.HeadDim)
                {
                    throw new InvalidDataException($"KV head {kv}'s index has dimension {heads[kv].Dimension}, expected {model.HeadDim}");
                }

                file.Position = start + length;
            }
        }
        catch
        {
            foreach (IKeyIndex? index in heads)
            {
                index?.Dispose();
            }

            throw;
        }

        return new IndexSegment(spec, 0, h.EndToken, heads, h.SampleQueries)
        {
            ContentKey = key,
            EndAddress = new BlockAddress(h.EndChain, layer),
            EndChecksum = h.EndChecksum,
        };
    }

    /// <summary>Moves an unreadable file aside (kept for inspection, never served again); returns its new name.</summary>
    public string MoveAside(UInt128 key, int layer, string spec)
    {
        string name = FileName(key, layer, spec);
        _present.TryRemove(name, out _);
        string aside = name + ".corrupt-" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
        try
        {
            File.Move(Path.Combine(_directory, name), Path.Combine(_directory, aside), overwrite: true);
        }
        catch (IOException)
        {
            // Already gone (another thread moved it): nothing left to serve.
        }

        return aside;
    }

    /// <summary>
    /// Deletes the files whose last block no context holds any more (no context can start with their blocks,
    /// so nobody can use them); files with unreadable headers are moved aside, after <paramref name="movingAside"/>
    /// (file, new name, reason) was told. Returns how many were deleted.
    /// </summary>
    public int CollectGarbage(Func<BlockAddress, ulong, bool> holds, Action<string, string, string> movingAside)
    {
        int deleted = 0;
        foreach (string name in _present.Keys)
        {
            string path = Path.Combine(_directory, name);
            Header h;
            try
            {
                using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
                using var r = new BinaryReader(file, Encoding.UTF8);
                h = ReadHeader(r);
            }
            catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException)
            {
                if (File.Exists(path))
                {
                    string moved = name + ".corrupt-" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
                    movingAside(name, moved, e.Message);
                    _present.TryRemove(name, out _);
                    File.Move(path, Path.Combine(_directory, moved), overwrite: true);
                }

                continue;
            }

            if (!holds(new BlockAddress(h.EndChain, h.Layer), h.EndChecksum))
            {
                _present.TryRemove(name, out _);
                File.Delete(path);
                deleted++;
            }
        }

        return deleted;
    }

    private static void WriteUInt128(BinaryWriter w, UInt128 value)
    {
        w.Write((ulong)value);
        w.Write((ulong)(value >> 64));
    }

    private static UInt128 ReadUInt128(BinaryReader r)
    {
        ulong low = r.ReadUInt64();
        ulong high = r.ReadUInt64();
        return new UInt128(high, low);
    }

    private static void Emit(FileStream file, XxHash3 hash, MemoryStream buffer)
    {
        ReadOnlySpan<byte> bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        hash.Append(bytes);
        file.Write(bytes);
    }

    /// <summary>The header of a segment file; throws <see cref="InvalidDataException"/> or <see cref="EndOfStreamException"/> when there is none.</summary>
    public static Header ReadHeader(BinaryReader r)
    {
        if (r.ReadUInt32() != Magic)
        {
            throw new InvalidDataException("not a KvDb index segment file (bad magic)");
        }

        int version = r.ReadInt32();
        if (version != Version)
        {
            throw new InvalidDataException($"index segment file version {version} is not supported (expected {Version})");
        }

        return new Header(r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), IndexFormat.ReadString(r), ReadUInt128(r), ReadUInt128(r), r.ReadUInt64(), r.ReadInt64(), r.ReadInt32());
    }

    /// <summary>What a segment file says it holds.</summary>
    public readonly record struct Header(int Layer, int KvHeads, int HeadDim, int BlockSize, string Spec, UInt128 Key, UInt128 EndChain, ulong EndChecksum, long EndToken, int SampleQueries);
}

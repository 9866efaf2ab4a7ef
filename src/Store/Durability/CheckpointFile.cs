namespace KvDb.Store.Durability;

/// <summary>
/// Reads and writes checkpoint files: one checksummed record (the WAL framing, type Checkpoint) holding a
/// <see cref="CheckpointImage"/>. Written to a temporary file, flushed to disk and renamed over
/// "checkpoint.kvc", then a second copy the same way as "checkpoint.prev.kvc", so a latest file that fails its checksum
/// falls back to an identical copy (or, after a crash between the two, to the checkpoint before, whose log is kept).
/// </summary>
internal static class CheckpointFile
{
    public const string LatestName = "checkpoint.kvc";
    public const string PreviousName = "checkpoint.prev.kvc";

    public static void Write(string dataDirectory, CheckpointImage image)
    {
        using var w = new RecordWriter(1 << 16);
        w.WriteInt64(image.Cut);
        w.WriteInt64(image.ReplayFrom);
        w.WriteInt64(image.NextTransactionId);
        w.WriteInt32(image.OpenTransactions.Count);
        foreach (long t in image.OpenTransactions)
        {
            w.WriteInt64(t);
        }

        w.WriteInt32(image.Models.Count);
        foreach (ModelSchema m in image.Models)
        {
            WalCodec.WriteModel(w, m);
        }

        w.WriteInt32(image.Contexts.Count);
        foreach (ContextImage c in image.Contexts)
        {
            w.WriteString(c.Id);
            w.WriteString(c.Model);
            w.WriteString(c.Namespace);
            w.WriteInt64(c.CreatedUnixMs);
            w.WriteInt64(c.ExpiresAtUnixMs);
            w.WriteInts(c.TokenIds);
            w.WriteInt32(c.Layers.Length);
            foreach (LayerImage l in c.Layers)
            {
                w.WriteInt64(l.Length);
                w.WriteInt32(l.Blocks.Count);
                foreach (KvBlock b in l.Blocks)
                {
                    w.WriteUInt64(b.Checksum);
                    w.WriteInt64(b.DiskAddress);
                }

                w.WriteBytes(l.TailKeys);
                w.WriteBytes(l.TailValues);
            }
        }

        // Appended after the contexts so that readers of the previous format, which stop there, still read the file.
        var pinned = new List<string>();
        foreach (ContextImage c in image.Contexts)
        {
            if (c.Pinned)
            {
                pinned.Add(c.Id);
            }
        }

        w.WriteInt32(pinned.Count);
        foreach (string id in pinned)
        {
            w.WriteString(id);
        }

        // Then the pins to another tier than CPU (after the pinned ids, so readers of the previous format stop before them).
        var tiers = new List<ContextImage>();
        foreach (ContextImage c in image.Contexts)
        {
            if (c.Pinned && c.PinTier != PinTier.Cpu)
            {
                tiers.Add(c);
            }
        }

        w.WriteInt32(tiers.Count);
        foreach (ContextImage c in tiers)
        {
            w.WriteString(c.Id);
            w.WriteByte((byte)c.PinTier);
        }

        ReadOnlySpan<byte> record = w.Finish(WalRecordType.Checkpoint);

        // Two copies of the same checkpoint, latest first: the log is truncated to this checkpoint's replay start once
        // both are on disk, so a copy that later fails its checksum falls back to an identical one instead of an older
        // checkpoint whose log is gone (PostgreSQL 11 dropped its "previous checkpoint" for the same reason: keeping
        // the log an older checkpoint needs costs space on every checkpoint for a rare fallback). A crash between the
        // two renames leaves the new latest and the older previous copy, whose log is still there.
        WriteDurably(Path.Combine(dataDirectory, LatestName), record);
        WriteDurably(Path.Combine(dataDirectory, PreviousName), record);
    }

    private static void WriteDurably(string path, ReadOnlySpan<byte> record)
    {
        string temp = path + ".tmp";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            f.Write(record);
            f.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Loads the newest readable checkpoint; counts unreadable ones in <paramref name="corrupt"/>. Null when none is usable.</summary>
    public static CheckpointImage? Load(string dataDirectory, out int corrupt, out string? problem)
    {
        corrupt = 0;
        problem = null;
        foreach (string name in (string[])[LatestName, PreviousName])
        {
            string path = Path.Combine(dataDirectory, name);
            if (!File.Exists(path))
            {
                continue;
            }

            try
            {
                byte[] bytes = File.ReadAllBytes(path);
                if (RecordWriter.TryOpen(bytes, out WalRecordType type, out ReadOnlySpan<byte> payload) && type == WalRecordType.Checkpoint)
                {
                    return Parse(payload);
                }
            }
            catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
            {
                problem = e.Message;
            }

            corrupt++;
            problem = $"checkpoint file {name} failed its checksum or could not be read" + (problem is null ? string.Empty : ": " + problem);
        }

        return null;
    }

    private static CheckpointImage Parse(ReadOnlySpan<byte> payload)
    {
        var r = new RecordReader(payload);
        var image = new CheckpointImage { Cut = r.ReadInt64(), ReplayFrom = r.ReadInt64(), NextTransactionId = r.ReadInt64() };
        int open = r.ReadInt32();
        for (int i = 0; i < open; i++)
        {
            image.OpenTransactions.Add(r.ReadInt64());
        }

        int models = r.ReadInt32();
        for (int i = 0; i < models; i++)
        {
            image.Models.Add(WalCodec.ReadModel(ref r));
        }

        int contexts = r.ReadInt32();
        for (int i = 0; i < contexts; i++)
        {
            string id = r.ReadString();
            string model = r.ReadString();
            string ns = r.ReadString();
            long created = r.ReadInt64();
            long expires = r.ReadInt64();
            int[] tokens = r.ReadInts();
            int layerCount = r.ReadInt32();
            if (layerCount is < 0 or > 4096)
            {
                throw new InvalidDataException("layer count out of range");
            }

            var layers = new LayerImage[layerCount];
            for (int l = 0; l < layerCount; l++)
            {
                long length = r.ReadInt64();
                int blocks = r.ReadInt32();
                var stored = new List<(ulong, long)>();
                for (int b = 0; b < blocks; b++)
                {
                    stored.Add((r.ReadUInt64(), r.ReadInt64()));
                }

                byte[] tailKeys = r.ReadBytes().ToArray();
                byte[] tailValues = r.ReadBytes().ToArray();
                layers[l] = new LayerImage { Length = length, TailKeys = tailKeys, TailValues = tailValues };
                layers[l].Stored.AddRange(stored);
            }

            image.Contexts.Add(new ContextImage { Id = id, Model = model, Namespace = ns, CreatedUnixMs = created, ExpiresAtUnixMs = expires, TokenIds = tokens, Layers = layers });
        }

        if (!r.AtEnd)
        {
            var pinned = new HashSet<string>();
            int count = r.ReadInt32();
            for (int i = 0; i < count; i++)
            {
                pinned.Add(r.ReadString());
            }

            foreach (ContextImage c in image.Contexts)
            {
                c.Pinned = pinned.Contains(c.Id);
            }
        }

        if (!r.AtEnd)
        {
            var tiers = new Dictionary<string, PinTier>();
            int count = r.ReadInt32();
            for (int i = 0; i < count; i++)
            {
                string id = r.ReadString();
                tiers[id] = (PinTier)r.ReadByte();
            }

            foreach (ContextImage c in image.Contexts)
            {
                if (c.Pinned && tiers.TryGetValue(c.Id, out PinTier tier) && Enum.IsDefined(tier))
                {
                    c.PinTier = tier;
                }
            }
        }

        return image;
    }
}

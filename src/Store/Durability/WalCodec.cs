using KvDb.Kernels;

namespace KvDb.Store.Durability;

/// <summary>Payload layouts of the write-ahead log records (all little-endian; strings are u32 length + UTF-8).</summary>
internal static class WalCodec
{
    public static void WriteModel(RecordWriter w, ModelSchema m)
    {
        w.WriteString(m.Name);
        w.WriteInt32(m.NumLayers);
        w.WriteInt32(m.NumQueryHeads);
        w.WriteInt32(m.NumKvHeads);
        w.WriteInt32(m.HeadDim);
        w.WriteByte((byte)m.DType);
        w.WriteInt32(m.BlockSize);
        w.WriteSingle(m.SoftmaxScale);
    }

    public static ModelSchema ReadModel(ref RecordReader r) =>
        new(r.ReadString(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), (KvDType)r.ReadByte(), r.ReadInt32(), r.ReadSingle());

    /// <summary>ContextCreate: id · model · namespace · created ms · expires ms · the shared prefix's token ids.</summary>
    public static RecordWriter Create(string id, string model, string ns, long createdMs, long expiresMs, ReadOnlySpan<int> sharedPrefix)
    {
        var w = new RecordWriter(64 + (sharedPrefix.Length * 4));
        w.WriteString(id);
        w.WriteString(model);
        w.WriteString(ns);
        w.WriteInt64(createdMs);
        w.WriteInt64(expiresMs);
        w.WriteInts(sharedPrefix);
        return w;
    }

    /// <summary>ContextFork: source id · new id · created ms · expires ms.</summary>
    public static RecordWriter Fork(string source, string id, long createdMs, long expiresMs)
    {
        var w = new RecordWriter();
        w.WriteString(source);
        w.WriteString(id);
        w.WriteInt64(createdMs);
        w.WriteInt64(expiresMs);
        return w;
    }

    /// <summary>ContextDelete: id.</summary>
    public static RecordWriter Delete(string id)
    {
        var w = new RecordWriter();
        w.WriteString(id);
        return w;
    }

    /// <summary>Chunk: transaction · context id · layer · first position · token ids · keys · values (wire layout).</summary>
    public static RecordWriter Chunk(long txn, string contextId, int layer, long start, ReadOnlySpan<int> ids, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        var w = new RecordWriter(64 + (ids.Length * 4) + keys.Length + values.Length);
        w.WriteInt64(txn);
        w.WriteString(contextId);
        w.WriteInt32(layer);
        w.WriteInt64(start);
        w.WriteInts(ids);
        w.WriteBytes(keys);
        w.WriteBytes(values);
        return w;
    }

    /// <summary>Commit and Abort: transaction · context id.</summary>
    public static RecordWriter End(long txn, string contextId)
    {
        var w = new RecordWriter();
        w.WriteInt64(txn);
        w.WriteString(contextId);
        return w;
    }

    /// <summary>Model: the schema.</summary>
    public static RecordWriter Model(ModelSchema m)
    {
        var w = new RecordWriter();
        WriteModel(w, m);
        return w;
    }
}

using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Google.Protobuf;
using KvDb.Fuzz.Targets;
using KvDb.Index;
using KvDb.Index.Catalog;
using KvDb.Protocol;
using Tensor = KvDb.Protocol.V1.Tensor;
using KvDb.Store;
using KvDb.Store.Durability;

namespace KvDb.Fuzz;

/// <summary>
/// The seed corpus: small valid inputs made by the real encoders (so the fuzzer starts from what the decoders
/// accept) plus a few edge cases. Deterministic, so regenerating it changes nothing.
/// </summary>
internal static class SeedCorpus
{
    public static void Write(string directory)
    {
        Tensors(Folder(directory, TensorTarget.Name));
        Wal(Folder(directory, WalTarget.Name));
        Checkpoints(Folder(directory, CheckpointTarget.Name));
        Blocks(Folder(directory, BlockTarget.Name));
        Indexes(Folder(directory, IndexTarget.Name), Folder(directory, KixTarget.Name));
    }

    private static string Folder(string root, string target) => Directory.CreateDirectory(Path.Combine(root, target)).FullName;

    private static float[] Values(int n, int seed)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = (float)((rng.NextDouble() * 2) - 1);
        }

        return v;
    }

    private static void Tensors(string dir)
    {
        const int Q = TensorTarget.QueryHeads, Kv = TensorTarget.KvHeads, D = TensorTarget.HeadDim;
        Save(dir, "queries-f32", TensorCodec.FromSingles(Values(2 * Q * D, 1), 2, Q, D));
        byte[] half = new byte[3 * Kv * D * 2];
        ElementConversion.FromSingle(KvDType.F16, Values(3 * Kv * D, 2), half);
        Save(dir, "keys-f16", TensorCodec.FromBytes(KvDType.F16, half, 3, Kv, D));
        byte[] bf = new byte[Q * D * 2];
        ElementConversion.FromSingle(KvDType.BF16, Values(Q * D, 3), bf);
        Save(dir, "samples-bf16", TensorCodec.FromBytes(KvDType.BF16, bf, 1, Q, D));
        float[] nan = Values(Q * D, 4);
        nan[5] = float.NaN;
        Save(dir, "edge-nan", TensorCodec.FromSingles(nan, 1, Q, D));
        Save(dir, "edge-short-data", TensorCodec.FromBytes(KvDType.F32, new byte[12], 1, Q, D));
        Save(dir, "edge-huge-shape", TensorCodec.FromBytes(KvDType.F16, new byte[4], long.MaxValue, Q, D));
        Save(dir, "edge-no-shape", new Tensor { Dtype = KvDb.Protocol.V1.DType.F32 });
    }

    private static void Save(string dir, string name, Tensor tensor) => File.WriteAllBytes(Path.Combine(dir, name), tensor.ToByteArray());

    private static void Wal(string dir)
    {
        var model = new ModelSchema("m", 2, 4, 2, 8, KvDType.F16, 16, 0.35f);
        byte[] keys = MemoryMarshal.AsBytes(Values(2 * 2 * 4, 5).AsSpan()).ToArray();
        WalRecord[] records =
        [
            new ModelRecord(model),
            new ContextCreateRecord("ctx", "m", "ns", 1_700_000_000_000, 0, [1, 2, 3]),
            new ContextDeleteRecord("ctx"),
            new ContextUpdateRecord("ctx", 1_700_000_060_000, Pinned: true, PinTier.Gpu),
            new ContextForkRecord("ctx", "fork", 1_700_000_000_001, 0),
            new ChunkRecord(7, "ctx", 1, 16, [4, 5], keys, keys),
            new CommitRecord(7, "ctx"),
            new AbortRecord(8, "ctx"),
            CheckpointMarkerRecord.Instance,
        ];
        foreach (WalRecord record in records)
        {
            using RecordWriter w = WalCodec.Encode(record);
            File.WriteAllBytes(Path.Combine(dir, record.Type.ToString().ToLowerInvariant()), w.Finish(record.Type).ToArray());
        }

        // A ContextUpdate of the version before pin tiers (ends after `pinned`), and one with an unknown tier.
        using (var w = new RecordWriter())
        {
            w.WriteString("ctx");
            w.WriteInt64(0);
            w.WriteByte(1);
            File.WriteAllBytes(Path.Combine(dir, "edge-update-v1"), w.Finish(WalRecordType.ContextUpdate).ToArray());
        }

        using (var w = new RecordWriter())
        {
            w.WriteInt32(int.MaxValue);
            File.WriteAllBytes(Path.Combine(dir, "edge-huge-count"), w.Finish(WalRecordType.ContextCreate).ToArray());
        }
    }

    private static void Checkpoints(string dir)
    {
        var image = new CheckpointImage { Cut = 4096, ReplayFrom = 64, NextTransactionId = 9 };
        image.OpenTransactions.Add(8);
        image.Models.Add(new ModelSchema("m", 2, 4, 2, 8, KvDType.F16, 16, 0.35f));
        byte[] tail = MemoryMarshal.AsBytes(Values(2 * 2 * 4, 6).AsSpan()).ToArray();
        image.Contexts.Add(new ContextImage { Id = "a", Model = "m", Namespace = "ns", CreatedUnixMs = 1, TokenIds = [1, 2], Layers = [new LayerImage { Length = 2, TailKeys = tail, TailValues = tail }, new LayerImage { Length = 2, TailKeys = tail, TailValues = tail }] });
        image.Contexts.Add(new ContextImage { Id = "b", Model = "m", Namespace = string.Empty, TokenIds = [], Layers = [new LayerImage(), new LayerImage()], Pinned = true, PinTier = PinTier.Gpu });
        string temp = Directory.CreateTempSubdirectory("kvdb-fuzz-seed").FullName;
        try
        {
            CheckpointFile.Write(temp, image);
            File.Copy(Path.Combine(temp, CheckpointFile.LatestName), Path.Combine(dir, "two-contexts"), overwrite: true);
            image.Contexts.Clear();
            CheckpointFile.Write(temp, image);
            File.Copy(Path.Combine(temp, CheckpointFile.LatestName), Path.Combine(dir, "no-contexts"), overwrite: true);
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    private static void Blocks(string dir)
    {
        byte[] content = MemoryMarshal.AsBytes(Values(16, 7).AsSpan()).ToArray();
        var record = new byte[BlockRecord.HeaderBytes + content.Length];
        BlockRecord.Write(record, new BlockAddress(new UInt128(0xfeed, 0xbeef), 3), XxHash3.HashToUInt64(content), content);
        File.WriteAllBytes(Path.Combine(dir, "block-64"), record);
        File.WriteAllBytes(Path.Combine(dir, "edge-header-only"), record[..BlockRecord.HeaderBytes]);
        BinaryPrimitives.WriteInt32LittleEndian(record.AsSpan(32), -1);
        File.WriteAllBytes(Path.Combine(dir, "edge-negative-length"), record);
    }

    private static void Indexes(string indexDir, string kixDir)
    {
        ModelSchema model = KixTarget.Model;
        const int Tokens = 48;
        float[] keys = Values(Tokens * model.HeadDim, 8);
        var positions = new long[Tokens];
        for (int i = 0; i < Tokens; i++)
        {
            positions[i] = i;
        }

        string temp = Directory.CreateTempSubdirectory("kvdb-fuzz-seed").FullName;
        try
        {
            var files = new IndexSegmentFiles(temp);
            foreach (string spec in (string[])["block", "centroid:L2,C4", "lsh:K4,L4", "graph:R4,Q8"])
            {
                string family = IndexSpec.Parse(spec).Family;
                var heads = new IKeyIndex[model.NumKvHeads];
                for (int kv = 0; kv < heads.Length; kv++)
                {
                    heads[kv] = IndexFactory.Create(spec, model.HeadDim);
                    heads[kv].Build(keys, positions);
                }

                using (var stream = new MemoryStream())
                {
                    heads[0].Save(stream);
                    File.WriteAllBytes(Path.Combine(indexDir, family), stream.ToArray());
                }

                using var segment = new IndexSegment(spec, 0, Tokens, heads, 0) { ContentKey = KixTarget.Key, EndAddress = new BlockAddress(UInt128.One, 0), EndChecksum = 42 };
                files.Save(segment, 0, model);
                File.Copy(Path.Combine(temp, IndexSegmentFiles.FileName(KixTarget.Key, 0, spec)), Path.Combine(kixDir, family), overwrite: true);
            }
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }
}

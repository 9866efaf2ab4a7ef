using System.IO.Hashing;
using KvDb.Index;
using KvDb.Index.Catalog;

namespace KvDb.Fuzz.Targets;

/// <summary>
/// Index segment files (.kix) through <see cref="IndexSegmentFiles.Read"/>: once as given (the checksum trailer
/// refuses nearly every mutation), then re-sealed with a correct trailer and checked against what its own header
/// claims (when that is a model the server could hold), so mutations reach the header checks and every KV head's
/// index loader. Bad input: as <see cref="IndexTarget"/>.
/// </summary>
internal static class KixTarget
{
    public const string Name = "kix";

    /// <summary>What the seeds describe and what a header with implausible dimensions is checked against.</summary>
    public static readonly UInt128 Key = new(0x0123456789abcdef, 0xfedcba9876543210);
    public static readonly ModelSchema Model = new("fuzz", 2, 4, 2, 8, KvDType.F16, 16, 0.35f);
    public const string Spec = "block";

    public static void Run(ReadOnlySpan<byte> data)
    {
        byte[] file = data.ToArray();
        Load(file, Key, 0, Spec, Model);
        if (file.Length < 8)
        {
            return;
        }

        XxHash3.Hash(file.AsSpan(0, file.Length - 8), file.AsSpan(file.Length - 8));
        (UInt128 key, int layer, string spec, ModelSchema model) = Claimed(file);
        Load(file, key, layer, spec, model);
    }

    private static void Load(byte[] file, UInt128 key, int layer, string spec, ModelSchema model)
    {
        try
        {
            using IndexSegment segment = IndexSegmentFiles.Read(new MemoryStream(file, writable: false), key, layer, spec, model);
        }
        catch (Exception e) when (IndexTarget.IsBadInput(e))
        {
        }
    }

    /// <summary>The segment the header says the file holds, on a model within ModelSchema's limits; the seeds' otherwise.</summary>
    private static (UInt128 Key, int Layer, string Spec, ModelSchema Model) Claimed(byte[] file)
    {
        IndexSegmentFiles.Header h;
        try
        {
            using var r = new BinaryReader(new MemoryStream(file, writable: false));
            h = IndexSegmentFiles.ReadHeader(r);
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
        {
            return (Key, 0, Spec, Model);
        }

        bool plausible = h.KvHeads is >= 1 and <= 1024 && h.HeadDim is >= 1 and <= ModelSchema.MaxHeadDim && h.BlockSize is >= 1 and <= 4096;
        ModelSchema model = plausible ? Model with { NumKvHeads = h.KvHeads, NumQueryHeads = h.KvHeads, HeadDim = h.HeadDim, BlockSize = h.BlockSize } : Model;
        return (h.Key, h.Layer, h.Spec, model);
    }
}

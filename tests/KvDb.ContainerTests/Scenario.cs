using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.ContainerTests;

/// <summary>The model and the deterministic K/V the container tests write and check (f32, so bytes compare exactly).</summary>
internal static class Scenario
{
    public const int BlockSize = 64;

    public static readonly Model Shape = new()
    {
        Name = "ct",
        NumLayers = 2,
        NumQueryHeads = 8,
        NumKvHeads = 2,
        HeadDim = 64,
        Dtype = DType.F32,
        BlockSize = BlockSize,
    };

    /// <summary>Bytes of one token's keys (or values) in one layer.</summary>
    public static int TokenBytes => Shape.NumKvHeads * Shape.HeadDim * sizeof(float);

    /// <summary>The workload of one (stream, layer): positions up to <paramref name="tokens"/> can be generated.</summary>
    public static SyntheticWorkload Workload(int layer, ulong seed, long tokens) => new(new SyntheticWorkloadOptions
    {
        Tokens = tokens,
        NumKvHeads = Shape.NumKvHeads,
        NumQueryHeads = Shape.NumQueryHeads,
        HeadDim = Shape.HeadDim,
        Layer = layer,
        Seed = seed,
    });

    public static int[] TokenIds(SyntheticWorkload w, long start, int count)
    {
        var ids = new int[count];
        w.FillTokenIds(start, ids);
        return ids;
    }

    /// <summary>Writes tokens [start, start + count) of every layer into one stream (one transaction), in chunks.</summary>
    public static async Task WriteAllLayersAsync(KvAppendStream stream, Func<int, SyntheticWorkload> layers, long start, int count, int chunk = 512)
    {
        for (int layer = 0; layer < Shape.NumLayers; layer++)
        {
            SyntheticWorkload w = layers(layer);
            for (int from = 0; from < count; from += chunk)
            {
                int n = Math.Min(chunk, count - from);
                await stream.WriteAsync(layer, TokenIds(w, start + from, n), w.KeyBytes(KvDType.F32, start + from, n), w.ValueBytes(KvDType.F32, start + from, n), KvDType.F32, Shape.NumKvHeads, Shape.HeadDim);
            }
        }
    }

    /// <summary>Asserts that a stored layer holds exactly tokens [0, count) of <paramref name="w"/>: ids, keys and values bit-exact.</summary>
    public static async Task AssertLayerAsync(KvDbClient client, string context, int layer, SyntheticWorkload w, long count, string what)
    {
        (int[] ids, byte[] keys, byte[] values) = await client.ReadLayerAsync(context, layer);
        Assert.True(ids.Length == count, $"{what}: {context} layer {layer} has {ids.Length} tokens, expected {count}");
        Assert.Equal(TokenIds(w, 0, (int)count), ids);
        Assert.True(w.KeyBytes(KvDType.F32, 0, (int)count).AsSpan().SequenceEqual(keys), $"{what}: keys of {context} layer {layer} differ");
        Assert.True(w.ValueBytes(KvDType.F32, 0, (int)count).AsSpan().SequenceEqual(values), $"{what}: values of {context} layer {layer} differ");
    }

    /// <summary>Keys or values f32 of tokens [0, count) as the reference wants them.</summary>
    public static float[] Floats(byte[] bytes) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
}

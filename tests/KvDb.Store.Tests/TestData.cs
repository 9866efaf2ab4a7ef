using KvDb.Kernels;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.Store.Tests;

/// <summary>Small models and deterministic K/V shared by the store tests.</summary>
internal static class TestData
{
    /// <summary>2 layers, 2 KV heads, d=16, block 16, f32.</summary>
    public static ModelSchema Small(string name = "m") => new(name, 2, 4, 2, 16, KvDType.F32, 16, 0);

    /// <summary>The same bytes for a position whatever the context length (the generator's length is fixed).</summary>
    public static SyntheticWorkload Workload(ModelSchema m, int tokens, int layer, ulong seed = 7) => new(new SyntheticWorkloadOptions
    {
        Tokens = Math.Max(tokens, 1 << 22),
        NumKvHeads = m.NumKvHeads,
        NumQueryHeads = m.NumQueryHeads,
        HeadDim = m.HeadDim,
        KeyRank = 4,
        RecentWindow = 4,
        Layer = layer,
        Seed = seed,
    });

    public static int[] Tokens(int count, int offset = 0)
    {
        var ids = new int[count];
        for (int i = 0; i < count; i++)
        {
            ids[i] = (int)((i + offset) * 2654435761L % 50000);
        }

        return ids;
    }

    /// <summary>Appends tokens [from, from+ids.Length) of every layer in one transaction.</summary>
    public static void Append(IKvStore store, string id, ModelSchema m, int[] ids, int from = 0, int chunk = 1000, ulong seed = 7)
    {
        using IAppendTransaction tx = store.BeginAppend(id);
        for (int layer = 0; layer < m.NumLayers; layer++)
        {
            SyntheticWorkload w = Workload(m, from + ids.Length, layer, seed);
            for (int s = 0; s < ids.Length; s += chunk)
            {
                int n = Math.Min(chunk, ids.Length - s);
                tx.Append(layer, ids.AsSpan(s, n), w.KeyBytes(m.DType, from + s, n), w.ValueBytes(m.DType, from + s, n));
            }
        }

        tx.Commit();
    }

    /// <summary>Reads a whole layer back in wire layout.</summary>
    public static (byte[] Keys, byte[] Values) Read(IKvStore store, string id, int layer)
    {
        using LayerSnapshot s = store.OpenLayer(id, layer);
        int bytes = (int)(s.Tokens * s.Model.NumKvHeads * s.Model.RowBytes);
        var k = new byte[bytes];
        var v = new byte[bytes];
        s.ReadRows(0, (int)s.Tokens, k, v);
        return (k, v);
    }

    /// <summary>Asserts a context layer holds exactly the workload's bytes for tokens [0, tokens).</summary>
    public static void AssertExact(IKvStore store, string id, ModelSchema m, int tokens, ulong seed = 7)
    {
        for (int layer = 0; layer < m.NumLayers; layer++)
        {
            (byte[] k, byte[] v) = Read(store, id, layer);
            SyntheticWorkload w = Workload(m, tokens, layer, seed);
            Assert.Equal(w.KeyBytes(m.DType, 0, tokens), k);
            Assert.Equal(w.ValueBytes(m.DType, 0, tokens), v);
        }
    }
}

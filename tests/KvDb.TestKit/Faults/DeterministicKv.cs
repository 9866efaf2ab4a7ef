using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.TestKit.Faults;

/// <summary>
/// The small f32 model the crash and fault tests append to, and its K/V as a pure function of (context, layer,
/// position): whatever a restarted server serves can be re-derived and compared bit for bit, with no copy of what
/// was sent kept in memory.
/// </summary>
public static class DeterministicKv
{
    public const string ModelName = "m";
    public const int Layers = 2;
    public const int QueryHeads = 4;
    public const int KvHeads = 2;
    public const int HeadDim = 16;
    public const int BlockSize = 16;
    public const int TokenBytes = KvHeads * HeadDim * 4;

    /// <summary>Bytes of one full block of one layer (keys and values).</summary>
    public const int BlockBytes = BlockSize * TokenBytes * 2;

    public static Model Model() => new()
    {
        Name = ModelName,
        NumLayers = Layers,
        NumQueryHeads = QueryHeads,
        NumKvHeads = KvHeads,
        HeadDim = HeadDim,
        Dtype = DType.F32,
        BlockSize = BlockSize,
    };

    public static int[] TokenIds(string id, long from, int n)
    {
        int salt = StableHash.Of(id);
        var ids = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = (int)(((from + i) * 7919 + salt) % 30011);
        }

        return ids;
    }

    /// <summary>Keys and values f32 [n, KvHeads, HeadDim] of tokens from..from+n of one layer.</summary>
    public static (byte[] Keys, byte[] Values) Kv(string id, int layer, long from, int n)
    {
        var k = new byte[n * TokenBytes];
        var v = new byte[n * TokenBytes];
        int salt = StableHash.Of(id);
        for (int t = 0; t < n; t++)
        {
            ulong s = (ulong)(from + t) * 0x9E3779B97F4A7C15UL ^ (ulong)salt * 0xBF58476D1CE4E5B9UL ^ (ulong)layer;
            for (int i = 0; i < TokenBytes / 4; i++)
            {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                BitConverter.TryWriteBytes(k.AsSpan((t * TokenBytes) + (i * 4)), (float)((s & 0xFFFF) / 65536.0 - 0.5));
                BitConverter.TryWriteBytes(v.AsSpan((t * TokenBytes) + (i * 4)), (float)(((s >> 16) & 0xFFFF) / 65536.0 - 0.5));
            }
        }

        return (k, v);
    }

    /// <summary>One AppendKv stream of tokens from..from+n, every layer; returns the acknowledged length.</summary>
    public static async Task<long> AppendAsync(KvDbClient client, string id, long from, int n, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        using KvAppendStream stream = client.OpenAppend(id, cancellationToken);
        int[] ids = TokenIds(id, from, n);
        for (int layer = 0; layer < Layers; layer++)
        {
            (byte[] k, byte[] v) = Kv(id, layer, from, n);
            await stream.WriteAsync(layer, ids, k, v, KvDType.F32, KvHeads, HeadDim).ConfigureAwait(false);
        }

        AppendKvResponse ack = await stream.CompleteAsync().ConfigureAwait(false);
        return ack.NumTokens;
    }
}

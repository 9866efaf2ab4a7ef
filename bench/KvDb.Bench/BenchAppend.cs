using Google.Protobuf;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Bench;

/// <summary>Appends one context of a bf16 bench model through AppendKv: every layer gets the same 1,024-token chunk of K/V, repeated.</summary>
internal static class BenchAppend
{
    /// <summary>
    /// Appends <paramref name="tokens"/> tokens (a multiple of 1,024) to every layer of <paramref name="contextId"/> in one
    /// stream; token ids start at <paramref name="firstTokenId"/>, so contexts given distinct ranges share no block.
    /// </summary>
    public static async Task AppendAsync(KvDbClient client, string contextId, int layers, int kvHeads, int headDim, int tokens, ByteString keys, ByteString values, int firstTokenId)
    {
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = client.Contexts.AppendKv();
        for (int layer = 0; layer < layers; layer++)
        {
            for (int start = 0; start < tokens; start += 1024)
            {
                var r = new AppendKvRequest
                {
                    ContextId = contextId,
                    Layer = layer,
                    Keys = new Tensor { Dtype = DType.Bf16, Data = keys, Shape = { 1024, kvHeads, headDim } },
                    Values = new Tensor { Dtype = DType.Bf16, Data = values, Shape = { 1024, kvHeads, headDim } },
                };
                for (int t = 0; t < 1024; t++)
                {
                    r.TokenIds.Add(firstTokenId + start + t);
                }

                await call.RequestStream.WriteAsync(r).ConfigureAwait(false);
            }
        }

        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        await call.ResponseAsync.ConfigureAwait(false);
    }
}

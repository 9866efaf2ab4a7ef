using Grpc.Core;
using KvDb.Protocol;
using KvDb.Protocol.V1;

namespace KvDb.Client;

/// <summary>
/// One AppendKv client stream: write chunks of any layers in order, then <see cref="CompleteAsync"/>.
/// The server applies the whole stream or, on any error, none of it.
/// </summary>
public sealed class KvAppendStream : IDisposable
{
    private readonly AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> _call;
    private readonly string _contextId;

    internal KvAppendStream(AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call, string contextId)
    {
        _call = call;
        _contextId = contextId;
    }

    /// <summary>Writes one message: <paramref name="tokenIds"/>.Length tokens of one layer, raw bytes [n, numKvHeads, headDim].</summary>
    public Task WriteAsync(int layer, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, KvDType dtype, int numKvHeads, int headDim)
    {
        var request = new AppendKvRequest
        {
            ContextId = _contextId,
            Layer = layer,
            Keys = TensorCodec.FromBytes(dtype, keys, tokenIds.Length, numKvHeads, headDim),
            Values = TensorCodec.FromBytes(dtype, values, tokenIds.Length, numKvHeads, headDim),
        };
        foreach (int id in tokenIds)
        {
            request.TokenIds.Add(id);
        }

        return SendAsync(request);
    }

    /// <summary>
    /// Sends <paramref name="queries"/> (f32 [m, numQueryHeads, headDim], e.g. the prefill's queries of this layer) as
    /// sample queries for query-guided indexes (graph, lsh Q=1); they take effect when the stream commits.
    /// </summary>
    public Task WriteSampleQueriesAsync(int layer, ReadOnlySpan<float> queries, int numQueryHeads, int headDim)
    {
        int rowFloats = numQueryHeads * headDim;
        if (rowFloats <= 0 || queries.Length == 0 || queries.Length % rowFloats != 0)
        {
            throw new ArgumentException($"queries must hold m ≥ 1 rows of {numQueryHeads} × {headDim} floats, got {queries.Length}", nameof(queries));
        }

        var request = new AppendKvRequest
        {
            ContextId = _contextId,
            Layer = layer,
            SampleQueries = TensorCodec.FromSingles(queries, queries.Length / rowFloats, numQueryHeads, headDim),
        };
        return SendAsync(request);
    }

    /// <summary>
    /// Writes one message. When the server has already ended the stream (it refused an earlier message: bad input, a
    /// quota), the write itself only says "cancelled"; the server's status, with its message and details, is what is
    /// thrown instead.
    /// </summary>
    private async Task SendAsync(AppendKvRequest request)
    {
        try
        {
            await _call.RequestStream.WriteAsync(request).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            await _call.ResponseAsync.ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Writes a layer's tokens split into messages of at most <paramref name="chunkTokens"/> tokens.</summary>
    public async Task WriteLayerAsync(int layer, int[] tokenIds, ReadOnlyMemory<byte> keys, ReadOnlyMemory<byte> values, KvDType dtype, int numKvHeads, int headDim, int chunkTokens = KvDbClient.DefaultChunkTokens)
    {
        ArgumentNullException.ThrowIfNull(tokenIds);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkTokens);
        int tokenBytes = numKvHeads * headDim * KvDTypeInfo.SizeOf(dtype);
        for (int start = 0; start < tokenIds.Length; start += chunkTokens)
        {
            int n = Math.Min(chunkTokens, tokenIds.Length - start);
            await WriteAsync(layer, tokenIds.AsSpan(start, n), keys.Span.Slice(start * tokenBytes, n * tokenBytes), values.Span.Slice(start * tokenBytes, n * tokenBytes), dtype, numKvHeads, headDim).ConfigureAwait(false);
        }
    }

    /// <summary>Ends the stream and returns the server's acknowledgement (the context's token count).</summary>
    public async Task<AppendKvResponse> CompleteAsync()
    {
        await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
        return await _call.ResponseAsync.ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Dispose() => _call.Dispose();
}

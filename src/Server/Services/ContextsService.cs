using Grpc.Core;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Contexts: create, read, delete, streamed append and prefix lookup.</summary>
public sealed class ContextsService : Contexts.ContextsBase
{
    private readonly IKvStore _store;

    /// <summary>Creates the service over the store.</summary>
    public ContextsService(IKvStore store)
    {
        _store = store;
    }

    /// <inheritdoc />
    public override Task<Context> CreateContext(CreateContextRequest request, ServerCallContext context)
    {
        int[] prefix = [.. request.PrefixTokenIds];
        return Task.FromResult(WireMapping.ToWire(_store.CreateContext(request.Model, request.Namespace, request.Id, prefix)));
    }

    /// <inheritdoc />
    public override Task<Context> GetContext(GetContextRequest request, ServerCallContext context) =>
        Task.FromResult(WireMapping.ToWire(_store.GetContext(request.Id)));

    /// <inheritdoc />
    public override Task<DeleteContextResponse> DeleteContext(DeleteContextRequest request, ServerCallContext context)
    {
        if (!_store.DeleteContext(request.Id))
        {
            throw KvDbException.NotFound($"context \"{request.Id}\" does not exist (already deleted?)");
        }

        return Task.FromResult(new DeleteContextResponse { Deleted = true });
    }

    /// <inheritdoc />
    public override async Task<AppendKvResponse> AppendKv(IAsyncStreamReader<AppendKvRequest> requestStream, ServerCallContext context)
    {
        IAppendTransaction? tx = null;
        string? contextId = null;
        ModelSchema? model = null;
        try
        {
            int index = 0;
            await foreach (AppendKvRequest chunk in requestStream.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
            {
                if (contextId is null)
                {
                    contextId = chunk.ContextId;
                    model = _store.GetModel(_store.GetContext(contextId).Model);
                    tx = _store.BeginAppend(contextId);
                }
                else if (chunk.ContextId.Length != 0 && chunk.ContextId != contextId)
                {
                    throw KvDbException.Invalid($"message {index} names context \"{chunk.ContextId}\" but the stream appends to \"{contextId}\"; open one AppendKv stream per context");
                }

                model!.CheckLayer(chunk.Layer);
                int n = TensorCodec.CheckShape("keys", chunk.Keys, model!.DType, model.NumKvHeads, model.HeadDim);
                int nv = TensorCodec.CheckShape("values", chunk.Values, model.DType, model.NumKvHeads, model.HeadDim);
                if (nv != n || chunk.TokenIds.Count != n)
                {
                    throw KvDbException.Invalid($"message {index}: keys have {n} tokens, values {nv} and token_ids {chunk.TokenIds.Count}; all three must be equal");
                }

                int[] ids = [.. chunk.TokenIds];
                tx!.Append(chunk.Layer, ids, chunk.Keys.Data.Span, chunk.Values.Data.Span);
                index++;
            }

            if (tx is null)
            {
                throw KvDbException.Invalid("AppendKv stream carried no messages; send at least one AppendKvRequest with context_id, layer, token_ids, keys and values");
            }

            ContextInfo info = tx.Commit();
            var response = new AppendKvResponse { NumTokens = info.NumTokens };
            response.LayerTokens.Add(info.LayerTokens);
            return response;
        }
        finally
        {
            tx?.Dispose();
        }
    }

    /// <inheritdoc />
    public override Task<LookupPrefixResponse> LookupPrefix(LookupPrefixRequest request, ServerCallContext context)
    {
        int[] ids = [.. request.TokenIds];
        return Task.FromResult(new LookupPrefixResponse { NumTokens = _store.LookupPrefix(request.Model, request.Namespace, ids) });
    }
}

using Grpc.Core;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.Server.Admission;
using KvDb.Server.Security;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Contexts: create, fork, read, list, delete, streamed append, streamed read-back and prefix lookup.</summary>
public sealed class ContextsService : Contexts.ContextsBase
{
    /// <summary>K and V bytes per ReadKv message.</summary>
    private const int ReadChunkBytes = 4 << 20;

    private readonly IKvStore _store;
    private readonly AttentionExecutor _executor;
    private readonly TenantQuotas _quotas;
    private readonly TenantRegistry _tenants;
    private readonly AdmissionGate _appends;

    /// <summary>
    /// Creates the service over the store; the executor receives the sample queries appends carry; tenants' context and
    /// byte quotas are held by <paramref name="quotas"/>, their grants on shared namespaces come from <paramref name="authenticator"/>;
    /// each AppendKv stream holds a slot of <paramref name="admission"/>'s append gate until it ends.
    /// </summary>
    public ContextsService(IKvStore store, AttentionExecutor executor, TenantQuotas quotas, Authenticator authenticator, AdmissionControl admission)
    {
        _appends = admission.Append;
        _store = store;
        _executor = executor;
        _quotas = quotas;
        _tenants = authenticator.Tenants;
    }

    /// <inheritdoc />
    public override Task<Context> CreateContext(CreateContextRequest request, ServerCallContext context)
    {
        int[] prefix = [.. request.PrefixTokenIds];
        Principal p = AuthInterceptor.PrincipalOf(context);
        _quotas.NewContext(p);
        ContextInfo created = _store.CreateContext(request.Model, TenantScope.Namespace(p, request.Namespace, _tenants), TenantScope.NewContextId(p, request.Id), prefix, request.TtlSeconds);
        return Task.FromResult(Public(p, created));
    }

    /// <inheritdoc />
    public override Task<Context> GetContext(GetContextRequest request, ServerCallContext context)
    {
        Principal p = AuthInterceptor.PrincipalOf(context);
        return Task.FromResult(Public(p, _store.GetContext(TenantScope.ContextId(p, request.Id))));
    }

    /// <inheritdoc />
    public override Task<Context> UpdateContext(UpdateContextRequest request, ServerCallContext context)
    {
        Principal p = AuthInterceptor.PrincipalOf(context);
        string id = TenantScope.ContextId(p, request.Id);
        if ((request.HasPinned || request.HasPinTier) && p.Tenant is not null)
        {
            // Checked after the id resolves, so another tenant's context still answers NOT_FOUND first.
            _store.GetContext(id);
            throw new RpcException(new Status(StatusCode.PermissionDenied, "pinning holds CPU-tier memory all tenants share: an admin pins and unpins contexts (send ttl_seconds alone to change the TTL)"));
        }

        ContextInfo updated = _store.UpdateContext(
            id,
            request.HasTtlSeconds ? request.TtlSeconds : null,
            request.HasPinned ? request.Pinned : null,
            request.HasPinTier ? WireMapping.ToPinTier(request.PinTier) : null);
        return Task.FromResult(Public(p, updated));
    }

    /// <inheritdoc />
    public override Task<DeleteContextResponse> DeleteContext(DeleteContextRequest request, ServerCallContext context)
    {
        string id = TenantScope.ContextId(AuthInterceptor.PrincipalOf(context), request.Id);
        if (!_store.DeleteContext(id))
        {
            throw KvDbException.NotFound($"context \"{request.Id}\" does not exist (already deleted?)");
        }

        // A new context may take the same id: it must not inherit AUTO's exact streaks and heavy-set sizes; its indexes
        // and sample queries go too.
        _executor.ForgetContext(id);
        return Task.FromResult(new DeleteContextResponse { Deleted = true });
    }

    /// <inheritdoc />
    public override async Task<AppendKvResponse> AppendKv(IAsyncStreamReader<AppendKvRequest> requestStream, ServerCallContext context)
    {
        // Taken before the first message is read: a refused stream has buffered nothing (the interceptor drains its body).
        using AdmissionGate.Slot slot = await _appends.EnterAsync(context.CancellationToken).ConfigureAwait(false);
        IAppendTransaction? tx = null;
        string? contextId = null;
        string? sentId = null;
        Principal principal = AuthInterceptor.PrincipalOf(context);
        long reserved = 0;
        bool committed = false;
        ModelSchema? model = null;
        var samples = new List<(int Layer, float[] Queries)>();
        try
        {
            int index = 0;
            await foreach (AppendKvRequest chunk in requestStream.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
            {
                if (contextId is null)
                {
                    sentId = chunk.ContextId;
                    contextId = TenantScope.ContextId(principal, chunk.ContextId);
                    model = _store.GetModel(_store.GetContext(contextId).Model);
                    tx = _store.BeginAppend(contextId);
                }
                else if (chunk.ContextId.Length != 0 && chunk.ContextId != sentId)
                {
                    throw KvDbException.Invalid($"message {index} names context \"{chunk.ContextId}\" but the stream appends to \"{sentId}\"; open one AppendKv stream per context");
                }

                model!.CheckLayer(chunk.Layer);
                if (chunk.SampleQueries is not null)
                {
                    TensorCodec.CheckShape("sample_queries", chunk.SampleQueries, null, model.NumQueryHeads, model.HeadDim);
                    samples.Add((chunk.Layer, TensorCodec.ToFiniteSingles("sample_queries", chunk.SampleQueries)));
                    if (chunk.Keys is null && chunk.Values is null && chunk.TokenIds.Count == 0)
                    {
                        // A message may carry only sample queries (e.g. sent after the layer's KV).
                        index++;
                        continue;
                    }
                }

                int n = TensorCodec.CheckShape("keys", chunk.Keys, model!.DType, model.NumKvHeads, model.HeadDim);
                int nv = TensorCodec.CheckShape("values", chunk.Values, model.DType, model.NumKvHeads, model.HeadDim);
                if (nv != n || chunk.TokenIds.Count != n)
                {
                    throw KvDbException.Invalid($"message {index}: keys have {n} tokens, values {nv} and token_ids {chunk.TokenIds.Count}; all three must be equal");
                }

                // Reserved before the store sees the bytes: a tenant over its byte quota fails here, with nothing of the stream committed.
                long bytes = (long)chunk.Keys!.Data.Length + chunk.Values!.Data.Length;
                _quotas.Reserve(principal, bytes);
                reserved += bytes;
                int[] ids = [.. chunk.TokenIds];
                tx!.Append(chunk.Layer, ids, chunk.Keys!.Data.Span, chunk.Values!.Data.Span);
                index++;
            }

            if (tx is null)
            {
                throw KvDbException.Invalid("AppendKv stream carried no messages; send at least one AppendKvRequest with context_id, layer, token_ids, keys and values");
            }

            ContextInfo info = await tx.CommitAsync().ConfigureAwait(false);
            committed = true;

            // Samples count only once the KV they describe is committed (a rejected stream leaves no trace).
            foreach ((int layer, float[] queries) in samples)
            {
                _executor.AddSampleQueries(contextId!, layer, queries);
            }
            var response = new AppendKvResponse { NumTokens = info.NumTokens };
            response.LayerTokens.Add(info.LayerTokens);
            return response;
        }
        finally
        {
            tx?.Dispose();
            _quotas.Release(principal, reserved, committed);
        }
    }

    /// <inheritdoc />
    public override Task<LookupPrefixResponse> LookupPrefix(LookupPrefixRequest request, ServerCallContext context)
    {
        int[] ids = [.. request.TokenIds];
        string ns = TenantScope.Namespace(AuthInterceptor.PrincipalOf(context), request.Namespace, _tenants);
        return Task.FromResult(new LookupPrefixResponse { NumTokens = _store.LookupPrefix(request.Model, ns, ids) });
    }

    /// <inheritdoc />
    public override Task<Context> ForkContext(ForkContextRequest request, ServerCallContext context)
    {
        Principal p = AuthInterceptor.PrincipalOf(context);
        _quotas.NewContext(p);
        return Task.FromResult(Public(p, _store.ForkContext(TenantScope.ContextId(p, request.Id), TenantScope.NewContextId(p, request.NewId))));
    }

    /// <inheritdoc />
    public override Task<ListContextsResponse> ListContexts(ListContextsRequest request, ServerCallContext context)
    {
        Principal p = AuthInterceptor.PrincipalOf(context);
        string token = request.PageToken.Length == 0 ? string.Empty : TenantScope.ContextId(p, request.PageToken);
        ContextPage page = _store.ListContexts(request.PageSize, token, TenantScope.IdPrefix(p));
        var response = new ListContextsResponse { NextPageToken = TenantScope.Public(p, page.NextPageToken) };
        foreach (ContextInfo c in page.Contexts)
        {
            response.Contexts.Add(Public(p, c));
        }

        return Task.FromResult(response);
    }

    /// <inheritdoc />
    public override async Task ReadKv(ReadKvRequest request, IServerStreamWriter<ReadKvChunk> responseStream, ServerCallContext context)
    {
        string contextId = TenantScope.ContextId(AuthInterceptor.PrincipalOf(context), request.ContextId);
        ModelSchema model = _store.GetModel(_store.GetContext(contextId).Model);
        if (request.Layer != -1)
        {
            model.CheckLayer(request.Layer);
        }

        if (request.Start < 0 || request.End < 0 || (request.End != 0 && request.End < request.Start))
        {
            throw KvDbException.Invalid($"start and end must satisfy 0 ≤ start ≤ end (end 0 = the layer's end), got [{request.Start}, {request.End})");
        }

        int tokenBytes = model.NumKvHeads * model.RowBytes;
        int chunkTokens = Math.Max(1, ReadChunkBytes / (2 * tokenBytes));
        int first = request.Layer == -1 ? 0 : request.Layer;
        int last = request.Layer == -1 ? model.NumLayers - 1 : request.Layer;
        for (int layer = first; layer <= last; layer++)
        {
            using LayerSnapshot snapshot = _store.OpenLayer(contextId, layer, context.CancellationToken);
            long end = request.End == 0 ? snapshot.Tokens : request.End;
            if (end > snapshot.Tokens || request.Start > end)
            {
                throw KvDbException.Invalid($"layer {layer} holds {snapshot.Tokens} tokens; ask for a range within [0, {snapshot.Tokens}) (end 0 = the layer's end)");
            }

            int[] ids = _store.ReadTokenIds(contextId, request.Start, end);
            for (long start = request.Start; start < end; start += chunkTokens)
            {
                int n = (int)Math.Min(chunkTokens, end - start);
                var keys = new byte[n * tokenBytes];
                var values = new byte[n * tokenBytes];
                snapshot.ReadRows(start, n, keys, values);
                var chunk = new ReadKvChunk
                {
                    Layer = layer,
                    Start = start,
                    Keys = TensorCodec.FromBytes(model.DType, keys, n, model.NumKvHeads, model.HeadDim),
                    Values = TensorCodec.FromBytes(model.DType, values, n, model.NumKvHeads, model.HeadDim),
                };
                chunk.TokenIds.Add(ids.AsSpan((int)(start - request.Start), n).ToArray());
                await responseStream.WriteAsync(chunk, context.CancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A context as the caller knows it: its id and namespace without the tenant's prefix.</summary>
    private static Context Public(Principal p, ContextInfo info)
    {
        Context wire = WireMapping.ToWire(info);
        wire.Id = TenantScope.Public(p, wire.Id);
        wire.Namespace = TenantScope.Public(p, wire.Namespace);
        return wire;
    }
}

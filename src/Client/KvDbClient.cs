using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using KvDb.Protocol;
using KvDb.Protocol.V1;

namespace KvDb.Client;

/// <summary>Typed .NET client for a KvDb server: models, contexts, chunked K/V appends and attention.</summary>
public sealed class KvDbClient : IDisposable
{
    /// <summary>Default tokens per AppendKv message: keeps messages well under the server's 64 MiB limit for common shapes.</summary>
    public const int DefaultChunkTokens = 1024;

    private readonly GrpcChannel _channel;

    /// <summary>
    /// Connects to <paramref name="address"/> (e.g. "http://127.0.0.1:50051", or "https://…" for a server with TLS). With
    /// <paramref name="apiKey"/> (a tenant's key from <c>kvdb tenant create</c>, or the admin key) every call carries
    /// <c>authorization: Bearer KEY</c>; without one it reaches only a server running open on loopback.
    /// </summary>
    public KvDbClient(string address, string? apiKey = null)
        : this(address, apiKey, caFile: null)
    {
    }

    /// <summary>
    /// As above, over TLS: the server's certificate must chain to a CA in <paramref name="caFile"/> (PEM; null = the
    /// system's roots), and <paramref name="clientCertificate"/> (with its key) is presented to a server that asks for
    /// one (mTLS).
    /// </summary>
    public KvDbClient(string address, string? apiKey, string? caFile, X509Certificate2? clientCertificate = null)
    {
        var handler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true };
        if (caFile is not null)
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(caFile);
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                certificate is not null && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None && ChainsTo(certificate, roots);
        }

        if (clientCertificate is not null)
        {
            handler.SslOptions.ClientCertificates = [clientCertificate];
        }

        _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
            HttpHandler = handler,
        });
        CallInvoker invoker = string.IsNullOrEmpty(apiKey)
            ? _channel.CreateCallInvoker()
            : _channel.Intercept(headers =>
            {
                headers.Add("authorization", "Bearer " + apiKey);
                return headers;
            });
        Models = new Models.ModelsClient(invoker);
        Contexts = new Contexts.ContextsClient(invoker);
        Attention = new Attention.AttentionClient(invoker);
        Admin = new Admin.AdminClient(invoker);
        Tenants = new Tenants.TenantsClient(invoker);
    }

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="roots"/> and nothing else.</summary>
    private static bool ChainsTo(X509Certificate certificate, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }

    /// <summary>The raw generated Models client.</summary>
    public Models.ModelsClient Models { get; }

    /// <summary>The raw generated Contexts client.</summary>
    public Contexts.ContextsClient Contexts { get; }

    /// <summary>The raw generated Attention client.</summary>
    public Attention.AttentionClient Attention { get; }

    /// <summary>The raw generated Admin client.</summary>
    public Admin.AdminClient Admin { get; }

    /// <summary>The raw generated Tenants client (admin keys only).</summary>
    public Tenants.TenantsClient Tenants { get; }

    /// <summary>Creates (or re-declares identically) a model.</summary>
    public async Task<Model> CreateModelAsync(Model model, CancellationToken cancellationToken = default) =>
        await Models.CreateModelAsync(new CreateModelRequest { Model = model }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Creates a context, optionally starting from the cached KV of <paramref name="prefixTokenIds"/>.</summary>
    public Task<Context> CreateContextAsync(string model, string ns = "", string id = "", IEnumerable<int>? prefixTokenIds = null, CancellationToken cancellationToken = default) =>
        CreateContextAsync(model, ns, id, prefixTokenIds, 0, cancellationToken);

    /// <summary>As above; a positive <paramref name="ttlSeconds"/> makes the server delete the context that long after creation.</summary>
    public async Task<Context> CreateContextAsync(string model, string ns, string id, IEnumerable<int>? prefixTokenIds, long ttlSeconds, CancellationToken cancellationToken = default)
    {
        var request = new CreateContextRequest { Model = model, Namespace = ns, Id = id, TtlSeconds = ttlSeconds };
        if (prefixTokenIds is not null)
        {
            request.PrefixTokenIds.Add(prefixTokenIds);
        }

        return await Contexts.CreateContextAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Copies a context's committed KV by reference under <paramref name="newId"/> (empty = server-assigned).</summary>
    public async Task<Context> ForkContextAsync(string id, string newId = "", CancellationToken cancellationToken = default) =>
        await Contexts.ForkContextAsync(new ForkContextRequest { Id = id, NewId = newId }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>One page of contexts in id order; pass the response's next_page_token for the next page.</summary>
    public async Task<ListContextsResponse> ListContextsAsync(int pageSize = 0, string pageToken = "", CancellationToken cancellationToken = default) =>
        await Contexts.ListContextsAsync(new ListContextsRequest { PageSize = pageSize, PageToken = pageToken }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Streams stored K/V back: tokens [start, end) of <paramref name="layer"/> (−1 = every layer, one after another;
    /// end 0 = the layer's end), as chunks in wire layout [n, num_kv_heads, head_dim].
    /// </summary>
    public async IAsyncEnumerable<ReadKvChunk> ReadKvAsync(string contextId, int layer = -1, long start = 0, long end = 0, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using AsyncServerStreamingCall<ReadKvChunk> call = Contexts.ReadKv(new ReadKvRequest { ContextId = contextId, Layer = layer, Start = start, End = end }, cancellationToken: cancellationToken);
        await foreach (ReadKvChunk chunk in call.ResponseStream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return chunk;
        }
    }

    /// <summary>Reads one whole layer back as (token ids, keys, values) raw bytes in wire layout.</summary>
    public async Task<(int[] TokenIds, byte[] Keys, byte[] Values)> ReadLayerAsync(string contextId, int layer, CancellationToken cancellationToken = default)
    {
        var ids = new List<int>();
        using var keys = new MemoryStream();
        using var values = new MemoryStream();
        await foreach (ReadKvChunk chunk in ReadKvAsync(contextId, layer, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            ids.AddRange(chunk.TokenIds);
            keys.Write(chunk.Keys.Data.Span);
            values.Write(chunk.Values.Data.Span);
        }

        return ([.. ids], keys.ToArray(), values.ToArray());
    }

    /// <summary>Store statistics: per-tier bytes, blocks, hits and misses, contexts, models, corrupt records.</summary>
    public async Task<StatsResponse> GetStatsAsync(CancellationToken cancellationToken = default) =>
        await Admin.GetStatsAsync(new GetStatsRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Demotes cold unpinned blocks to the disk tier until the CPU tier holds at most <paramref name="targetCpuBytes"/>.</summary>
    public async Task<EvictResponse> EvictAsync(long targetCpuBytes, CancellationToken cancellationToken = default) =>
        await Admin.EvictAsync(new EvictRequest { TargetCpuBytes = targetCpuBytes }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Writes a checkpoint now (servers with a data directory).</summary>
    public async Task<CheckpointResponse> CheckpointAsync(CancellationToken cancellationToken = default) =>
        await Admin.CheckpointAsync(new CheckpointRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Gives the disk space of deleted and dropped blocks back now (servers with a data directory).</summary>
    public async Task<CompactResponse> CompactAsync(CancellationToken cancellationToken = default) =>
        await Admin.CompactAsync(new CompactRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Reads a context's state.</summary>
    public async Task<Context> GetContextAsync(string id, CancellationToken cancellationToken = default) =>
        await Contexts.GetContextAsync(new GetContextRequest { Id = id }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Changes a context's TTL (seconds from now; 0 = never expires) and/or pin (admin key); null keeps a setting.</summary>
    public async Task<Context> UpdateContextAsync(string id, long? ttlSeconds = null, bool? pinned = null, CancellationToken cancellationToken = default)
    {
        var request = new UpdateContextRequest { Id = id };
        if (ttlSeconds is long ttl)
        {
            request.TtlSeconds = ttl;
        }

        if (pinned is bool pin)
        {
            request.Pinned = pin;
        }

        return await Contexts.UpdateContextAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Pins a context so its blocks are not demoted below <paramref name="tier"/> (admin key); unpin with <see cref="UpdateContextAsync"/> (pinned: false).</summary>
    public async Task<Context> PinContextAsync(string id, PinTier tier, CancellationToken cancellationToken = default) =>
        await Contexts.UpdateContextAsync(new UpdateContextRequest { Id = id, Pinned = true, PinTier = tier }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Deletes a context.</summary>
    public async Task DeleteContextAsync(string id, CancellationToken cancellationToken = default) =>
        await Contexts.DeleteContextAsync(new DeleteContextRequest { Id = id }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Longest cached prefix of <paramref name="tokenIds"/> in tokens.</summary>
    public async Task<long> LookupPrefixAsync(string model, string ns, IEnumerable<int> tokenIds, CancellationToken cancellationToken = default)
    {
        var request = new LookupPrefixRequest { Model = model, Namespace = ns };
        request.TokenIds.Add(tokenIds);
        return (await Contexts.LookupPrefixAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false)).NumTokens;
    }

    /// <summary>Opens one AppendKv stream (one transaction) for a context.</summary>
    public KvAppendStream OpenAppend(string contextId, CancellationToken cancellationToken = default) =>
        new(Contexts.AppendKv(cancellationToken: cancellationToken), contextId);

    /// <summary>
    /// Appends one layer's K/V for <paramref name="tokenIds"/> in a single stream, split into messages of
    /// <paramref name="chunkTokens"/> tokens. Keys and values are raw bytes [n, numKvHeads, headDim] of <paramref name="dtype"/>.
    /// </summary>
    public async Task<AppendKvResponse> AppendLayerAsync(string contextId, int layer, int[] tokenIds, ReadOnlyMemory<byte> keys, ReadOnlyMemory<byte> values, KvDType dtype, int numKvHeads, int headDim, int chunkTokens = DefaultChunkTokens, CancellationToken cancellationToken = default)
    {
        using KvAppendStream stream = OpenAppend(contextId, cancellationToken);
        await stream.WriteLayerAsync(layer, tokenIds, keys, values, dtype, numKvHeads, headDim, chunkTokens).ConfigureAwait(false);
        return await stream.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Partial attention of f32 <paramref name="queries"/> [numQueries, numQueryHeads, headDim] over a stored layer,
    /// skipping [excludeStart, excludeEnd) (empty when end ≤ start).
    /// </summary>
    public async Task<AttentionPartial> AttendAsync(string contextId, int layer, float[] queries, int numQueries, int numQueryHeads, int headDim, long excludeStart = 0, long excludeEnd = 0, Plan? plan = null, CancellationToken cancellationToken = default)
    {
        AttendRequest request = BuildAttend(contextId, layer, queries, numQueries, numQueryHeads, headDim, excludeStart, excludeEnd, plan);
        AttendResponse response = await Attention.AttendAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
        return ToPartial(response, numQueries, numQueryHeads, headDim);
    }

    /// <summary>
    /// Runs the request as <see cref="AttendAsync"/> would (the server executes it: actual rows and bytes are part of
    /// the answer) and returns the structured explain instead of the output: the plan that ran and why, the index
    /// statuses, the contract, per KV head the choice, estimated and actual rows/bytes, heavy mass, bound and the
    /// alternatives that lost.
    /// </summary>
    public async Task<ExplainResponse> ExplainAsync(string contextId, int layer, float[] queries, int numQueries, int numQueryHeads, int headDim, long excludeStart = 0, long excludeEnd = 0, Plan? plan = null, CancellationToken cancellationToken = default)
    {
        AttendRequest request = BuildAttend(contextId, layer, queries, numQueries, numQueryHeads, headDim, excludeStart, excludeEnd, plan);
        return await Attention.ExplainAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Builds an AttendRequest carrying f32 queries.</summary>
    public static AttendRequest BuildAttend(string contextId, int layer, ReadOnlySpan<float> queries, int numQueries, int numQueryHeads, int headDim, long excludeStart = 0, long excludeEnd = 0, Plan? plan = null)
    {
        var request = new AttendRequest
        {
            ContextId = contextId,
            Layer = layer,
            Queries = TensorCodec.FromSingles(queries, numQueries, numQueryHeads, headDim),
            Plan = plan ?? new Plan { Kind = PlanKind.Auto },
        };
        if (excludeEnd > excludeStart)
        {
            request.Exclude = new TokenRange { Start = excludeStart, End = excludeEnd };
        }

        return request;
    }

    /// <summary>Decodes an AttendResponse into a partial.</summary>
    public static AttentionPartial ToPartial(AttendResponse response, int numQueries, int numQueryHeads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(response);
        float[] output = ElementConversion.ToSingle(KvDType.F32, response.Output.Data.Span);
        float[] lse = ElementConversion.ToSingle(KvDType.F32, response.Lse.Data.Span);
        return new AttentionPartial(output, lse, numQueries, numQueryHeads, headDim, response.Stats);
    }

    /// <inheritdoc />
    public void Dispose() => _channel.Dispose();
}

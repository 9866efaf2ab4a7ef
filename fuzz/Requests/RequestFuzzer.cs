using System.Security.Cryptography;
using Google.Protobuf;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Fuzz.Requests;

/// <summary>
/// The request-level fuzzer: against a running server it creates a model and protected contexts with known K/V,
/// then sends random mutations of valid requests over every RPC — unary calls, AppendKv streams that complete, are
/// cancelled, broken off or end with a bad layer, AttendStream, ReadKv, WatchEvents, and requests whose serialized
/// bytes are corrupted — each with a deadline. Invariants: no INTERNAL or UNKNOWN answer, no call past its deadline,
/// the server still answers at the end, and the protected contexts read back byte for byte as before. Calls that
/// could legitimately change a protected context (delete, update, a completed append) only ever name scratch ids.
/// </summary>
internal sealed class RequestFuzzer
{
    private const string ModelName = "fz";
    private const int Layers = 2;
    private const int QueryHeads = 4;
    private const int KvHeads = 2;
    private const int HeadDim = 8;

    private static readonly string[] Protected = ["keep-0", "keep-1", "keep-2"];
    private static readonly string[] Scratch = ["s-0", "s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "s-7"];
    private static readonly string[] AnyIds = [.. Protected, .. Scratch, ModelName, "t-0", "t-1", "ns"];
    private static readonly string[] ScratchIds = [.. Scratch, ModelName, "t-0", "t-1", "t-2", "ns"];
    private static readonly Marshaller<byte[]> RawBytes = Marshallers.Create(b => b, b => b);

    private readonly KvDbClient _client;
    private readonly RequestFuzzOptions _options;
    private readonly RequestFuzzReport _report = new();
    private readonly int[] _tokens = [.. Enumerable.Range(100, 48)];

    private RequestFuzzer(KvDbClient client, RequestFuzzOptions options)
    {
        _client = client;
        _options = options;
    }

    /// <summary>Runs the fuzzer through <paramref name="client"/> (an admin's, so every RPC is reachable) and reports what it saw.</summary>
    public static async Task<RequestFuzzReport> RunAsync(KvDbClient client, RequestFuzzOptions options)
    {
        var fuzzer = new RequestFuzzer(client, options);
        await fuzzer.SetUpAsync().ConfigureAwait(false);
        Dictionary<string, string> before = await fuzzer.DigestsAsync().ConfigureAwait(false);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var stop = new CancellationTokenSource(options.MaxDuration);
        int issued = 0;
        var workers = new Task[options.Workers];
        for (int w = 0; w < workers.Length; w++)
        {
            var random = new Random(options.Seed + w);
            workers[w] = Task.Run(async () =>
            {
                var mutator = new MessageMutator(random);
                while (!stop.IsCancellationRequested && Interlocked.Increment(ref issued) <= options.Requests)
                {
                    await fuzzer.OneCallAsync(random, mutator).ConfigureAwait(false);
                }
            });
        }

        await Task.WhenAll(workers).ConfigureAwait(false);
        fuzzer._report.Elapsed = clock.Elapsed;

        try
        {
            await client.Admin.GetStatsAsync(new GetStatsRequest(), deadline: DateTime.UtcNow.AddSeconds(30));
            Dictionary<string, string> after = await fuzzer.DigestsAsync().ConfigureAwait(false);
            fuzzer._report.DataIntact = before.Count == Protected.Length && before.All(p => after.TryGetValue(p.Key, out string? d) && d == p.Value);
            foreach ((string id, string digest) in before)
            {
                if (!after.TryGetValue(id, out string? now) || now != digest)
                {
                    fuzzer._report.Violation($"protected context {id} changed: {digest} -> {now ?? "gone"}");
                }
            }
        }
        catch (RpcException e)
        {
            fuzzer._report.Violation($"the server did not answer after the run: {e.StatusCode} {e.Status.Detail}");
        }

        return fuzzer._report;
    }

    private DateTime Deadline => DateTime.UtcNow + _options.CallDeadline;

    private async Task SetUpAsync()
    {
        await _client.CreateModelAsync(ValidModel()).ConfigureAwait(false);
        await _client.CreateContextAsync(ModelName, "ns", Protected[0]).ConfigureAwait(false);
        await AppendAsync(Protected[0], _tokens[..40], seed: 1).ConfigureAwait(false);
        await _client.CreateContextAsync(ModelName, "ns", Protected[1], _tokens[..32]).ConfigureAwait(false);
        await AppendAsync(Protected[1], _tokens[32..], seed: 2).ConfigureAwait(false);
        await _client.ForkContextAsync(Protected[0], Protected[2]).ConfigureAwait(false);
    }

    private async Task AppendAsync(string id, int[] tokens, int seed)
    {
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = _client.Contexts.AppendKv(deadline: Deadline);
        for (int layer = 0; layer < Layers; layer++)
        {
            await call.RequestStream.WriteAsync(ValidAppend(id, layer, tokens, new Random(seed + layer))).ConfigureAwait(false);
        }

        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        await call;
    }

    /// <summary>Per protected context: SHA-256 over its length, layer lengths and every ReadKv chunk (token ids, keys, values).</summary>
    private async Task<Dictionary<string, string>> DigestsAsync()
    {
        var digests = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string id in Protected)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            Context context = await _client.Contexts.GetContextAsync(new GetContextRequest { Id = id }, deadline: Deadline);
            hash.AppendData(BitConverter.GetBytes(context.NumTokens));
            foreach (long n in context.LayerTokens)
            {
                hash.AppendData(BitConverter.GetBytes(n));
            }

            await foreach (ReadKvChunk chunk in _client.ReadKvAsync(id).ConfigureAwait(false))
            {
                hash.AppendData(BitConverter.GetBytes(chunk.Layer));
                hash.AppendData(BitConverter.GetBytes(chunk.Start));
                foreach (int t in chunk.TokenIds)
                {
                    hash.AppendData(BitConverter.GetBytes(t));
                }

                hash.AppendData(chunk.Keys.Data.Span);
                hash.AppendData(chunk.Values.Data.Span);
            }

            digests[id] = $"{context.NumTokens} tokens, sha256 {Convert.ToHexString(hash.GetHashAndReset())[..16]}";
        }

        return digests;
    }

    private async Task OneCallAsync(Random random, MessageMutator mutator)
    {
        int op = random.Next(24);
        string rpc = "?";
        try
        {
            switch (op)
            {
                case 0:
                    rpc = "CreateModel";
                    await _client.Models.CreateModelAsync(mutator.Mutate(new CreateModelRequest { Model = ValidModel() }, AnyIds), deadline: Deadline);
                    break;
                case 1:
                    rpc = "GetModel/ListModels";
                    await (random.Next(2) == 0
                        ? _client.Models.GetModelAsync(mutator.Mutate(new GetModelRequest { Name = ModelName }, AnyIds), deadline: Deadline).ResponseAsync
                        : (Task)_client.Models.ListModelsAsync(new ListModelsRequest(), deadline: Deadline).ResponseAsync);
                    break;
                case 2:
                    rpc = "CreateContext";
                    await _client.Contexts.CreateContextAsync(mutator.Mutate(ValidCreate(random), ScratchIds), deadline: Deadline);
                    break;
                case 3:
                    rpc = "GetContext/ListContexts";
                    await (random.Next(2) == 0
                        ? _client.Contexts.GetContextAsync(mutator.Mutate(new GetContextRequest { Id = Pick(random, AnyIds) }, AnyIds), deadline: Deadline).ResponseAsync
                        : (Task)_client.Contexts.ListContextsAsync(mutator.Mutate(new ListContextsRequest { PageSize = 3 }, AnyIds), deadline: Deadline).ResponseAsync);
                    break;
                case 4:
                    rpc = "DeleteContext";
                    await _client.Contexts.DeleteContextAsync(mutator.Mutate(new DeleteContextRequest { Id = Pick(random, Scratch) }, ScratchIds), deadline: Deadline);
                    break;
                case 5:
                    rpc = "UpdateContext";
                    await _client.Contexts.UpdateContextAsync(mutator.Mutate(new UpdateContextRequest { Id = Pick(random, Scratch), TtlSeconds = 600, Pinned = true, PinTier = PinTier.Cpu }, ScratchIds), deadline: Deadline);
                    break;
                case 6 or 7 or 8:
                    rpc = "AppendKv";
                    await AppendFuzzAsync(random, mutator).ConfigureAwait(false);
                    break;
                case 9:
                    rpc = "LookupPrefix";
                    var lookup = new LookupPrefixRequest { Model = ModelName, Namespace = "ns" };
                    lookup.TokenIds.Add(_tokens[..random.Next(1, _tokens.Length)]);
                    await _client.Contexts.LookupPrefixAsync(mutator.Mutate(lookup, AnyIds), deadline: Deadline);
                    break;
                case 10:
                    rpc = "ForkContext";
                    await _client.Contexts.ForkContextAsync(mutator.Mutate(new ForkContextRequest { Id = Pick(random, AnyIds), NewId = Pick(random, Scratch) }, AnyIds), deadline: Deadline);
                    break;
                case 11 or 12:
                    rpc = "ReadKv";
                    await ReadKvFuzzAsync(random, mutator).ConfigureAwait(false);
                    break;
                case 13 or 14:
                    rpc = "Attend";
                    await _client.Attention.AttendAsync(mutator.Mutate(ValidAttend(random), AnyIds), deadline: Deadline);
                    break;
                case 15:
                    rpc = "Explain";
                    await _client.Attention.ExplainAsync(mutator.Mutate(ValidAttend(random), AnyIds), deadline: Deadline);
                    break;
                case 16 or 17:
                    rpc = "AttendStream";
                    await AttendStreamFuzzAsync(random, mutator).ConfigureAwait(false);
                    break;
                case 18:
                    rpc = "Admin";
                    await AdminFuzzAsync(random, mutator).ConfigureAwait(false);
                    break;
                case 19 or 20:
                    rpc = "Tenants";
                    await TenantsFuzzAsync(random, mutator).ConfigureAwait(false);
                    break;
                default:
                    rpc = "raw bytes";
                    await RawFuzzAsync(random, mutator).ConfigureAwait(false);
                    break;
            }

            _report.Count(StatusCode.OK);
        }
        catch (RpcException e)
        {
            _report.Count(e.StatusCode);
            if (e.StatusCode is StatusCode.Internal or StatusCode.Unknown)
            {
                _report.Violation($"{rpc}: {e.StatusCode} {e.Status.Detail}");
            }
            else if (e.StatusCode == StatusCode.DeadlineExceeded)
            {
                _report.Violation($"{rpc}: no answer within {_options.CallDeadline.TotalSeconds} s");
            }
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or ObjectDisposedException or OperationCanceledException)
        {
            // Our own cancellation of a stream ends here on some paths; anything else is a client-side failure.
            _report.Count(StatusCode.Cancelled);
            if (e is not OperationCanceledException)
            {
                _report.Violation($"{rpc}: client failed with {e.GetType().Name}: {e.Message}");
            }
        }
    }

    /// <summary>
    /// An append stream: 1–4 chunks, some mutated, ended by completing, cancelling, breaking off or a bad layer. A stream
    /// to a protected context never completes normally (it always ends broken or with a bad layer), so it must leave the
    /// context as it was.
    /// </summary>
    private async Task AppendFuzzAsync(Random random, MessageMutator mutator)
    {
        bool toProtected = random.Next(2) == 0;
        string id = toProtected ? Pick(random, Protected) : Pick(random, Scratch);
        int ending = toProtected ? 1 + random.Next(3) : random.Next(4);
        using var cancel = new CancellationTokenSource();
        using AsyncClientStreamingCall<AppendKvRequest, AppendKvResponse> call = _client.Contexts.AppendKv(deadline: Deadline, cancellationToken: cancel.Token);
        int chunks = 1 + random.Next(4);
        int n = 1 + random.Next(20);
        int[] tokens = [.. Enumerable.Range(random.Next(1000), n)];
        for (int i = 0; i < chunks; i++)
        {
            AppendKvRequest request = ValidAppend(id, random.Next(Layers), tokens, random);
            if (random.Next(3) == 0)
            {
                request = mutator.Mutate(request, toProtected ? Protected : ScratchIds);
                if (toProtected)
                {
                    request.ContextId = id;
                }
            }

            await call.RequestStream.WriteAsync(request).ConfigureAwait(false);
        }

        switch (ending)
        {
            case 0:
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                await call;
                break;
            case 1:
                cancel.Cancel();
                await call;
                break;
            case 2:
                // Broken off: the client goes away without ending its stream (the call is disposed).
                return;
            default:
                await call.RequestStream.WriteAsync(ValidAppend(id, Layers + random.Next(3), tokens, random)).ConfigureAwait(false);
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                await call;
                break;
        }
    }

    private async Task ReadKvFuzzAsync(Random random, MessageMutator mutator)
    {
        var request = new ReadKvRequest { ContextId = Pick(random, AnyIds), Layer = random.Next(-1, Layers), Start = random.Next(8), End = random.Next(2) * random.Next(8, 48) };
        using var cancel = new CancellationTokenSource();
        using AsyncServerStreamingCall<ReadKvChunk> call = _client.Contexts.ReadKv(mutator.Mutate(request, AnyIds), deadline: Deadline, cancellationToken: cancel.Token);
        int stopAfter = random.Next(4) == 0 ? 1 : int.MaxValue;
        int read = 0;
        await foreach (ReadKvChunk _ in call.ResponseStream.ReadAllAsync().ConfigureAwait(false))
        {
            if (++read >= stopAfter)
            {
                cancel.Cancel();
            }
        }
    }

    private async Task AttendStreamFuzzAsync(Random random, MessageMutator mutator)
    {
        using var cancel = new CancellationTokenSource();
        using AsyncDuplexStreamingCall<AttendRequest, AttendResponse> call = _client.Attention.AttendStream(deadline: Deadline, cancellationToken: cancel.Token);
        Task reading = Task.Run(async () =>
        {
            await foreach (AttendResponse _ in call.ResponseStream.ReadAllAsync().ConfigureAwait(false))
            {
            }
        });
        int messages = 1 + random.Next(5);
        bool cancelMidway = random.Next(4) == 0;
        for (int i = 0; i < messages; i++)
        {
            AttendRequest request = random.Next(2) == 0 ? mutator.Mutate(ValidAttend(random), AnyIds) : ValidAttend(random);
            try
            {
                await call.RequestStream.WriteAsync(request).ConfigureAwait(false);
            }
            catch (RpcException)
            {
                break; // The server already ended the call (a bad message); its status comes from the reader.
            }

            if (cancelMidway && i == messages / 2)
            {
                cancel.Cancel();
                break;
            }
        }

        if (!cancel.IsCancellationRequested)
        {
            try
            {
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
            }
            catch (RpcException)
            {
                // Ended already: the reader sees the status.
            }
        }

        await reading.ConfigureAwait(false);
    }

    private async Task AdminFuzzAsync(Random random, MessageMutator mutator)
    {
        switch (random.Next(5))
        {
            case 0:
                await _client.Admin.GetStatsAsync(new GetStatsRequest(), deadline: Deadline);
                break;
            case 1:
                await _client.Admin.EvictAsync(mutator.Mutate(new EvictRequest { TargetCpuBytes = 1 << 20 }, AnyIds), deadline: Deadline);
                break;
            case 2:
                await _client.Admin.CheckpointAsync(new CheckpointRequest(), deadline: Deadline);
                break;
            case 3:
                await _client.Admin.ReadAuditAsync(mutator.Mutate(new ReadAuditRequest { Limit = 10 }, AnyIds), deadline: Deadline);
                break;
            default:
                using (var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50 + random.Next(200))))
                {
                    using AsyncServerStreamingCall<BlockEvent> call = _client.Admin.WatchEvents(mutator.Mutate(new WatchEventsRequest { Buffer = 16 }, AnyIds), deadline: Deadline, cancellationToken: cancel.Token);
                    try
                    {
                        int events = 0;
                        await foreach (BlockEvent _ in call.ResponseStream.ReadAllAsync(cancel.Token).ConfigureAwait(false))
                        {
                            if (++events >= 3)
                            {
                                break;
                            }
                        }
                    }
                    catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && cancel.IsCancellationRequested)
                    {
                        // Our own time limit on a stream that never ends.
                    }
                }

                break;
        }
    }

    private async Task TenantsFuzzAsync(Random random, MessageMutator mutator)
    {
        string tenant = "t-" + random.Next(3);
        Tenants.TenantsClient t = _client.Tenants;
        switch (random.Next(7))
        {
            case 0:
                await t.CreateTenantAsync(mutator.Mutate(new CreateTenantRequest { Name = tenant }, ScratchIds), deadline: Deadline);
                break;
            case 1:
                await t.ListTenantsAsync(new ListTenantsRequest(), deadline: Deadline);
                break;
            case 2:
                await t.DeleteTenantAsync(mutator.Mutate(new DeleteTenantRequest { Name = tenant }, ScratchIds), deadline: Deadline);
                break;
            case 3:
                await t.CreateApiKeyAsync(mutator.Mutate(new CreateApiKeyRequest { Tenant = tenant }, ScratchIds), deadline: Deadline);
                break;
            case 4:
                await t.RevokeApiKeyAsync(mutator.Mutate(new RevokeApiKeyRequest { KeyId = "k" + random.Next(100) }, ScratchIds), deadline: Deadline);
                break;
            case 5:
                await t.SetQuotaAsync(mutator.Mutate(new SetQuotaRequest { Tenant = tenant, Quota = new Quota { Bytes = 1 << 20, Contexts = 4, Streams = 2 } }, ScratchIds), deadline: Deadline);
                break;
            default:
                await t.GrantAsync(mutator.Mutate(new GrantRequest { Tenant = tenant, Namespace = "ns" }, ScratchIds), deadline: Deadline);
                break;
        }
    }

    /// <summary>A read-only unary call whose serialized request is corrupted: reaches the server's protobuf parsing.</summary>
    private async Task RawFuzzAsync(Random random, MessageMutator mutator)
    {
        (string service, string method, IMessage request) = random.Next(5) switch
        {
            0 => ("kvdb.v1.Attention", "Attend", (IMessage)ValidAttend(random)),
            1 => ("kvdb.v1.Attention", "Explain", ValidAttend(random)),
            2 => ("kvdb.v1.Contexts", "GetContext", new GetContextRequest { Id = Pick(random, AnyIds) }),
            3 => ("kvdb.v1.Models", "CreateModel", new CreateModelRequest { Model = ValidModel() }),
            _ => ("kvdb.v1.Contexts", "LookupPrefix", new LookupPrefixRequest { Model = ModelName, Namespace = "ns", TokenIds = { _tokens } }),
        };
        var call = new Method<byte[], byte[]>(MethodType.Unary, service, method, RawBytes, RawBytes);
        await _client.CallInvoker.AsyncUnaryCall(call, null, new CallOptions(deadline: Deadline), mutator.Corrupt(request.ToByteArray()));
    }

    private static Model ValidModel() => new() { Name = ModelName, NumLayers = Layers, NumQueryHeads = QueryHeads, NumKvHeads = KvHeads, HeadDim = HeadDim, Dtype = DType.F32, BlockSize = 16 };

    private CreateContextRequest ValidCreate(Random random)
    {
        var request = new CreateContextRequest { Model = ModelName, Namespace = "ns", Id = Pick(random, Scratch), TtlSeconds = random.Next(2) * 600 };
        if (random.Next(2) == 0)
        {
            request.PrefixTokenIds.Add(_tokens[..random.Next(1, _tokens.Length)]);
        }

        return request;
    }

    private static AppendKvRequest ValidAppend(string id, int layer, int[] tokens, Random random)
    {
        var request = new AppendKvRequest { ContextId = id, Layer = layer, Keys = Tensor(random, tokens.Length, KvHeads), Values = Tensor(random, tokens.Length, KvHeads) };
        request.TokenIds.Add(tokens);
        return request;
    }

    private static AttendRequest ValidAttend(Random random) => new()
    {
        ContextId = Pick(random, random.Next(4) == 0 ? Scratch : Protected),
        Layer = random.Next(Layers),
        Queries = Tensor(random, 1 + random.Next(3), QueryHeads),
        Plan = new Plan { Kind = (PlanKind)random.Next(1, 9), Budget = random.Next(2) * 8 },
        ReturnSelection = random.Next(2) == 0,
    };

    private static Tensor Tensor(Random random, int rows, int heads)
    {
        var values = new float[rows * heads * HeadDim];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2) - 1);
        }

        return KvDb.Protocol.TensorCodec.FromSingles(values, rows, heads, HeadDim);
    }

    private static string Pick(Random random, string[] from) => from[random.Next(from.Length)];
}

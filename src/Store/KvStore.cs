using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.Store.Durability;

namespace KvDb.Store;

/// <summary>
/// The store: models and context manifests in memory, K/V in immutable content-addressed full blocks shared
/// through a global block directory (plus one open tail block per context layer), tiered between the CPU
/// arena and, with a data directory, a disk block log; every change is written ahead to a FasterLog and
/// periodically checkpointed, so every acknowledged operation survives a crash.
/// Lock order: metadata lock → context gate → block gate → arena.
/// </summary>
public partial class KvStore : IKvStore
{
    private const int MaxPageSize = 1000;

    private readonly ConcurrentDictionary<string, ModelSchema> _models = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, KvContext> _contexts = new(StringComparer.Ordinal);
    private readonly Lock _opLock = new();
    private readonly NativeSlabArena _arena;
    private readonly BlockDirectory _directory = new();
    private readonly Timer? _timer;
    private readonly CudaDeviceTier? _gpu;
    private long _nextTxnId = 1;
    private long _dedupeHits;
    private long _expired;
    private int _maintenanceRunning;
    private int _disposed;

    /// <summary>Creates a store; with <see cref="StoreOptions.DataDirectory"/> set it recovers what the directory holds first.</summary>
    public KvStore(StoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        _arena = new NativeSlabArena(options.ResolvedCpuBudgetBytes);
        if (options.DataDirectory is string dir)
        {
            Blocks = OpenDurable(dir);
        }
        else
        {
            Blocks = new BlockManager(_arena, null, _directory);
        }

        _gpu = OpenGpuTier(options);
        Blocks.Device = _gpu;

        if (options.MaintenanceInterval > TimeSpan.Zero)
        {
            _timer = new Timer(_ => Maintain(), null, options.MaintenanceInterval, options.MaintenanceInterval);
        }
    }

    /// <summary>The options the store was created with.</summary>
    public StoreOptions Options { get; }

    /// <summary>What became of <see cref="StoreOptions.GpuBudgetBytes"/>: "gpu tier: …" when on, "gpu tier off: …" with the reason otherwise.</summary>
    public string GpuTierStatus { get; private set; } = "gpu tier off: no GPU budget (--gpu-budget BYTES)";

    /// <summary>The GPU tier, or null when it is off.</summary>
    public CudaDeviceTier? DeviceTier => _gpu;

    /// <summary>The tier manager (CPU arena and, with a data directory, the disk tier).</summary>
    public BlockManager Blocks { get; private set; }

    internal BlockDirectory Directory => _directory;

    internal Lock OpLock => _opLock;

    /// <inheritdoc />
    public ModelSchema CreateModel(ModelSchema model)
    {
        ModelSchema normalized = ModelSchema.Normalize(model);
        if (Durable && normalized.BlockBytes > BlockLog.MaxBlockBytes)
        {
            throw KvDbException.Invalid($"a block of this model takes {normalized.BlockBytes} bytes but a persistent store holds blocks of at most {BlockLog.MaxBlockBytes}; use a smaller block_size");
        }

        long address;
        lock (_opLock)
        {
            if (_models.TryGetValue(normalized.Name, out ModelSchema? existing))
            {
                if (existing == normalized)
                {
                    return existing;
                }

                throw new KvDbException(KvDbErrorCode.AlreadyExists, $"model \"{normalized.Name}\" exists with a different schema ({Describe(existing)}); use another name or send the identical schema");
            }

            _models[normalized.Name] = normalized;
            address = Log(WalRecordType.Model, () => WalCodec.Model(normalized));
        }

        WaitDurable(address);
        return normalized;
    }

    /// <inheritdoc />
    public ModelSchema GetModel(string name) =>
        _models.TryGetValue(name ?? string.Empty, out ModelSchema? m)
            ? m
            : throw KvDbException.NotFound($"model \"{name}\" does not exist; create it with Models.CreateModel first");

    /// <inheritdoc />
    public IReadOnlyList<ModelSchema> ListModels()
    {
        var list = new List<ModelSchema>(_models.Values);
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    /// <inheritdoc />
    public ContextInfo CreateContext(string model, string ns, string? id, ReadOnlySpan<int> prefixTokenIds) =>
        CreateContext(model, ns, id, prefixTokenIds, 0);

    /// <inheritdoc />
    public ContextInfo CreateContext(string model, string ns, string? id, ReadOnlySpan<int> prefixTokenIds, long ttlSeconds)
    {
        ModelSchema schema = GetModel(model);
        id = CheckNewId(id);
        if (ttlSeconds is < 0 or > 10L * 365 * 24 * 3600)
        {
            throw KvDbException.Invalid($"ttl_seconds must be 0 (no expiry) or a positive number of seconds up to ten years, got {ttlSeconds}");
        }

        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long expires = ttlSeconds > 0 ? now + (ttlSeconds * 1000) : 0;
        (ContextInfo info, long address, _) = CreateCore(schema, ns ?? string.Empty, id, prefixTokenIds, now, expires);
        WaitDurable(address);
        return info;
    }

    /// <inheritdoc />
    public ContextInfo ForkContext(string id, string? newId)
    {
        KvContext source = Find(id);
        newId = CheckNewId(newId);
        (ContextInfo info, long address) = ForkCore(source, newId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        WaitDurable(address);
        return info;
    }

    /// <inheritdoc />
    public ContextInfo GetContext(string id)
    {
        KvContext c = Find(id);
        lock (c.Gate)
        {
            return c.Info();
        }
    }

    /// <inheritdoc />
    public ContextPage ListContexts(int pageSize, string? pageToken)
    {
        if (pageSize < 0)
        {
            throw KvDbException.Invalid($"page_size must be ≥ 0 (0 = 100, at most {MaxPageSize}), got {pageSize}");
        }

        int size = pageSize == 0 ? 100 : Math.Min(pageSize, MaxPageSize);
        var ids = new List<string>(_contexts.Keys);
        ids.Sort(StringComparer.Ordinal);
        int start = 0;
        if (!string.IsNullOrEmpty(pageToken))
        {
            start = ids.BinarySearch(pageToken, StringComparer.Ordinal);
            start = start >= 0 ? start + 1 : ~start;
        }

        var page = new List<ContextInfo>(Math.Min(size, ids.Count));
        int i = start;
        for (; i < ids.Count && page.Count < size; i++)
        {
            if (_contexts.TryGetValue(ids[i], out KvContext? c))
            {
                lock (c.Gate)
                {
                    page.Add(c.Info());
                }
            }
        }

        return new ContextPage(page, i < ids.Count && page.Count > 0 ? page[^1].Id : string.Empty);
    }

    /// <inheritdoc />
    public bool DeleteContext(string id)
    {
        long address;
        lock (_opLock)
        {
            if (!_contexts.TryRemove(id ?? string.Empty, out KvContext? c))
            {
                return false;
            }

            address = Log(WalRecordType.ContextDelete, () => WalCodec.Delete(c.Id));
            lock (c.Gate)
            {
                c.Deleted = true;
                Unregister(c);
                foreach (ContextLayer l in c.Layers)
                {
                    l.ReleaseAll();
                }

                c.TrimTokens(0);
            }

            _directory.Sweep();
        }

        WaitDurable(address);
        return true;
    }

    /// <inheritdoc />
    public IAppendTransaction BeginAppend(string contextId) =>
        BeginAppendCore(Find(contextId), Interlocked.Increment(ref _nextTxnId));

    /// <inheritdoc />
    public LayerSnapshot OpenLayer(string contextId, int layer)
    {
        KvContext c = Find(contextId);
        c.Model.CheckLayer(layer);
        lock (c.Gate)
        {
            ContextLayer l = c.Layers[layer];
            KvBlock[] blocks = [.. l.Blocks];
            var views = new KvBlockRef[blocks.Length];
            int referenced = 0;
            int pinned = 0;
            try
            {
                for (; referenced < blocks.Length; referenced++)
                {
                    blocks[referenced].AddRef();
                }

                Blocks.PinAll(blocks, ref pinned);
                long start = 0;
                for (int i = 0; i < blocks.Length; i++)
                {
                    int rows = (int)Math.Min(c.Model.BlockSize, l.Length - start);
                    views[i] = blocks[i].View(rows, start);
                    start += rows;
                }
            }
            catch
            {
                for (int i = 0; i < referenced; i++)
                {
                    if (i < pinned)
                    {
                        Blocks.Unpin(blocks[i]);
                    }

                    blocks[i].Release();
                }

                throw;
            }

            return new LayerSnapshot(c.Model, layer, blocks, views, l.Length, Blocks);
        }
    }

    /// <inheritdoc />
    public string? DataDirectory => Options.DataDirectory;

    /// <inheritdoc />
    public bool HoldsBlock(BlockAddress address, ulong checksum)
    {
        if (_directory.Holds(address, checksum))
        {
            return true;
        }

        // A private block (its address is published with other bytes) is only reachable through its contexts.
        foreach (KvContext c in _contexts.Values)
        {
            if ((uint)address.Layer >= (uint)c.Model.NumLayers)
            {
                continue;
            }

            lock (c.Gate)
            {
                foreach (KvBlock b in c.Layers[address.Layer].Blocks)
                {
                    if (b.Address == address && b.Checksum == checksum)
                    {
                        return true;
                    }
                }
            }
        }

        return false;
    }

    /// <inheritdoc />
    public int[] ReadTokenIds(string contextId, long start, long end)
    {
        KvContext c = Find(contextId);
        lock (c.Gate)
        {
            if (start < 0 || end < start || end > c.TokenIds.Count)
            {
                throw KvDbException.Invalid($"token range [{start}, {end}) is outside context \"{contextId}\"'s {c.TokenIds.Count} token ids");
            }

            return CollectionsMarshal.AsSpan(c.TokenIds).Slice((int)start, (int)(end - start)).ToArray();
        }
    }

    /// <inheritdoc />
    public long LookupPrefix(string model, string ns, ReadOnlySpan<int> tokenIds)
    {
        ModelSchema schema = GetModel(model);
        UInt128 root = BlockHashing.Root(schema.Name, ns ?? string.Empty);
        lock (_opLock)
        {
            long fast = FastPrefixLength(schema, root, tokenIds);
            if (fast >= 0)
            {
                return fast;
            }

            PrefixMatch match = Match(schema, root, tokenIds);
            return ((long)match.Chain.Count * schema.BlockSize) + match.Extra;
        }
    }

    /// <summary>
    /// LookupPrefix without walking the whole chain: one hash finds the contexts whose committed tokens start
    /// with the same first block, and a vectorized common-prefix scan of their token ids gives the answer.
    /// This equals the chain walk because every published block chain is held by some context that
    /// committed those tokens in every layer. Returns −1 (walk the chain instead) for prompts shorter than a
    /// block, when no context holds the first block, or when too many do to compare them all.
    /// </summary>
    private long FastPrefixLength(ModelSchema m, UInt128 root, ReadOnlySpan<int> tokens)
    {
        const int MaxCandidates = 64;
        if (tokens.Length < m.BlockSize)
        {
            return -1;
        }

        List<KvContext>? owners = _directory.ContextsAt(BlockHashing.Next(root, tokens[..m.BlockSize]));
        if (owners is null || owners.Count > MaxCandidates)
        {
            return -1;
        }

        long best = -1;
        foreach (KvContext c in owners)
        {
            lock (c.Gate)
            {
                if (c.Deleted || c.Model != m)
                {
                    continue;
                }

                int limit = (int)Math.Min(Math.Min(c.CommittedTokens, c.TokenIds.Count), tokens.Length);
                best = Math.Max(best, tokens[..limit].CommonPrefixLength(CollectionsMarshal.AsSpan(c.TokenIds)[..limit]));
            }
        }

        return best >= m.BlockSize ? best : -1;
    }

    /// <inheritdoc />
    public StoreStats GetStats()
    {
        long blocks = 0;
        long logical = 0;
        foreach (KvContext c in _contexts.Values)
        {
            lock (c.Gate)
            {
                foreach (ContextLayer l in c.Layers)
                {
                    blocks += l.Blocks.Count;
                    logical += l.Length * c.Model.TokenBytesPerLayer;
                }
            }
        }

        return new StoreStats(_models.Count, _contexts.Count, blocks, _arena.UsedBytes, _arena.BudgetBytes, logical)
        {
            Tiers = Blocks.GetTierStats(),
            SharedBlocks = _directory.PublishedBlocks,
            DedupeHits = Interlocked.Read(ref _dedupeHits),
            CorruptRecords = Interlocked.Read(ref _corrupt) + Blocks.CorruptBlocks,
            ExpiredContexts = Interlocked.Read(ref _expired),
            WalBytes = _wal is null ? 0 : _wal.TailAddress - _wal.BeginAddress,
            Durable = Durable,
        };
    }

    /// <inheritdoc />
    public (long Blocks, long Bytes) Evict(long targetCpuBytes)
    {
        if (!Blocks.CanSpill)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "this server keeps everything in memory, so blocks cannot be demoted; start it with --data DIR to get a disk tier");
        }

        if (targetCpuBytes < 0)
        {
            throw KvDbException.Invalid($"target_cpu_bytes must be ≥ 0, got {targetCpuBytes}");
        }

        return Blocks.Demote(targetCpuBytes);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _timer?.Dispose();

        // A maintenance pass already running must not touch the logs or the arena after they are closed.
        SpinWait.SpinUntil(() => Volatile.Read(ref _maintenanceRunning) == 0, TimeSpan.FromSeconds(60));
        CloseDurable();
        Blocks.Device = null;
        _gpu?.Dispose();
        _arena.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>A copy of a context layer's block list (tests and diagnostics).</summary>
    internal List<KvBlock> BlocksOf(string id, int layer)
    {
        KvContext c = Find(id);
        lock (c.Gate)
        {
            return [.. c.Layers[layer].Blocks];
        }
    }

    internal void CountDedupe() => Interlocked.Increment(ref _dedupeHits);

    /// <summary>Registers the context under the chain values of its newly committed full blocks (metadata lock and context gate held).</summary>
    internal void RegisterCommitted(KvContext c)
    {
        long full = c.CommittedTokens / c.Model.BlockSize;
        for (int i = c.RegisteredBlocks; i < full; i++)
        {
            _directory.Register(c.Chain[i], c);
        }

        c.RegisteredBlocks = (int)Math.Max(c.RegisteredBlocks, full);
    }

    private CudaDeviceTier? OpenGpuTier(StoreOptions options)
    {
        if (options.GpuBudgetBytes <= 0)
        {
            return null;
        }

        if (!CudaRuntime.IsAvailable)
        {
            GpuTierStatus = $"gpu tier off: a GPU budget of {options.GpuBudgetBytes} bytes was asked for but the CUDA backend is unavailable ({CudaRuntime.UnavailableReason}); attention runs on the CPU";
            Report(GpuTierStatus);
            return null;
        }

        try
        {
            var tier = new CudaDeviceTier(options.GpuBudgetBytes, options.GpuDevice);
            GpuTierStatus = $"gpu tier: up to {options.GpuBudgetBytes} bytes on device {options.GpuDevice} ({CudaRuntime.DeviceName(options.GpuDevice)})";
            return tier;
        }
        catch (Exception e) when (e is CudaException or InvalidOperationException or ArgumentException)
        {
            GpuTierStatus = $"gpu tier off: opening CUDA device {options.GpuDevice} failed ({e.Message}); attention runs on the CPU";
            Report(GpuTierStatus);
            return null;
        }
    }

    private static string Describe(ModelSchema m) =>
        $"layers {m.NumLayers}, query heads {m.NumQueryHeads}, kv heads {m.NumKvHeads}, head_dim {m.HeadDim}, dtype {KvDTypeInfo.Name(m.DType)}, block {m.BlockSize}, scale {m.SoftmaxScale}";

    private static string CheckNewId(string? id)
    {
        if (string.IsNullOrEmpty(id))
        {
            return "ctx-" + Guid.NewGuid().ToString("N");
        }

        if (id.Length > 256 || id.AsSpan().IndexOfAny('/', '\0') >= 0)
        {
            throw KvDbException.Invalid("context id must be at most 256 characters without '/' or NUL; leave it empty for a server-assigned id");
        }

        return id;
    }

    private void Unregister(KvContext c)
    {
        _directory.Unregister(c.Root, c);
        for (int i = 0; i < c.RegisteredBlocks; i++)
        {
            _directory.Unregister(c.Chain[i], c);
        }

        c.RegisteredBlocks = 0;
    }

    private AppendTransaction BeginAppendCore(KvContext c, long txnId)
    {
        lock (c.Gate)
        {
            if (c.Deleted)
            {
                throw KvDbException.NotFound($"context \"{c.Id}\" was deleted");
            }

            if (c.OpenTransaction is not null)
            {
                throw new KvDbException(KvDbErrorCode.FailedPrecondition, $"context \"{c.Id}\" already has an open AppendKv stream; send all layers of a context through one stream at a time");
            }

            var tx = new AppendTransaction(this, c, txnId, logged: Logging);
            c.OpenTransaction = tx;
            return tx;
        }
    }

    /// <summary>Creates and publishes a context (with its shared prefix); returns its info, its log address and the prefix tokens shared.</summary>
    private (ContextInfo Info, long Address, long Shared) CreateCore(ModelSchema schema, string ns, string id, ReadOnlySpan<int> prefix, long createdMs, long expiresMs)
    {
        lock (_opLock)
        {
            if (_contexts.ContainsKey(id))
            {
                throw new KvDbException(KvDbErrorCode.AlreadyExists, $"context \"{id}\" already exists; choose another id or leave it empty for a server-assigned one");
            }

            var c = new KvContext(id, schema, ns, createdMs, expiresMs);
            long shared = prefix.IsEmpty ? 0 : SharePrefix(c, prefix);
            int[] sharedIds = prefix[..(int)shared].ToArray();
            long address = Log(WalRecordType.ContextCreate, () => WalCodec.Create(id, schema.Name, ns, createdMs, expiresMs, sharedIds));
            _contexts[id] = c;
            lock (c.Gate)
            {
                _directory.Register(c.Root, c);
                RegisterCommitted(c);
                _directory.Sweep();
                return (c.Info(), address, shared);
            }
        }
    }

    private (ContextInfo Info, long Address) ForkCore(KvContext source, string newId, long createdMs)
    {
        lock (_opLock)
        {
            if (source.Deleted)
            {
                throw KvDbException.NotFound($"context \"{source.Id}\" was deleted");
            }

            if (_contexts.ContainsKey(newId))
            {
                throw new KvDbException(KvDbErrorCode.AlreadyExists, $"context \"{newId}\" already exists; choose another new_id or leave it empty for a server-assigned one");
            }

            var c = new KvContext(newId, source.Model, source.Namespace, createdMs, source.ExpiresAtUnixMs);
            lock (source.Gate)
            {
                for (int layer = 0; layer < c.Layers.Length; layer++)
                {
                    CopyCommitted(source, c, layer, 0, source.CommittedLengths[layer]);
                    c.Layers[layer].Length = source.CommittedLengths[layer];
                    c.CommittedLengths[layer] = source.CommittedLengths[layer];
                }

                c.AddTokens(CollectionsMarshal.AsSpan(source.TokenIds)[..(int)source.CommittedTokenIds]);
            }

            long address = Log(WalRecordType.ContextFork, () => WalCodec.Fork(source.Id, newId, createdMs, c.ExpiresAtUnixMs));
            _contexts[newId] = c;
            lock (c.Gate)
            {
                _directory.Register(c.Root, c);
                RegisterCommitted(c);
                return (c.Info(), address);
            }
        }
    }

    /// <summary>
    /// Fills a new context with the longest cached prefix of <paramref name="prefix"/>: full blocks from the directory by
    /// reference, then the best matching committed context's next rows (full blocks by reference, a partial block copied).
    /// Metadata lock held. Returns the tokens shared.
    /// </summary>
    private long SharePrefix(KvContext target, ReadOnlySpan<int> prefix)
    {
        ModelSchema m = target.Model;
        PrefixMatch match = Match(m, target.Root, prefix);
        int full = 0;
        var acquired = new KvBlock[m.NumLayers];
        for (; full < match.Chain.Count; full++)
        {
            int got = 0;
            for (; got < m.NumLayers; got++)
            {
                KvBlock? b = _directory.Acquire(match.Chain[full], got);
                if (b is null)
                {
                    break;
                }

                acquired[got] = b;
            }

            if (got < m.NumLayers)
            {
                // Freed between the walk and now: stop the shared prefix here.
                for (int i = 0; i < got; i++)
                {
                    acquired[i].Release();
                }

                break;
            }

            for (int layer = 0; layer < m.NumLayers; layer++)
            {
                target.Layers[layer].Blocks.Add(acquired[layer]);
            }
        }

        long shared = (long)full * m.BlockSize;
        if (full == match.Chain.Count && match.Source is KvContext source && match.Extra > 0)
        {
            lock (source.Gate)
            {
                for (int layer = 0; layer < m.NumLayers; layer++)
                {
                    CopyCommitted(source, target, layer, shared, match.Extra);
                }
            }

            shared += match.Extra;
        }

        for (int layer = 0; layer < m.NumLayers; layer++)
        {
            target.Layers[layer].Length = shared;
            target.CommittedLengths[layer] = shared;
        }

        target.AddTokens(prefix[..(int)shared]);
        return shared;
    }

    /// <summary>Appends source rows [from, from+count) of a layer to target (from is block-aligned): full blocks by reference, a partial one copied. Source gate held.</summary>
    private void CopyCommitted(KvContext source, KvContext target, int layer, long from, long count)
    {
        int b = source.Model.BlockSize;
        List<KvBlock> src = source.Layers[layer].Blocks;
        List<KvBlock> dst = target.Layers[layer].Blocks;
        long pos = from;
        long end = from + count;
        while (pos < end)
        {
            KvBlock block = src[(int)(pos / b)];
            int rows = (int)Math.Min(b, end - pos);
            if (rows == b)
            {
                block.AddRef();
                dst.Add(block);
            }
            else
            {
                Blocks.Pin(block);
                try
                {
                    dst.Add(block.CopyPrefix(rows));
                }
                finally
                {
                    Blocks.Unpin(block);
                }
            }

            pos += rows;
        }
    }

    /// <summary>
    /// Walks the hash chain of <paramref name="tokens"/> through the directory (full blocks cached in every layer), then looks
    /// among the contexts registered at the last matched chain value for the longest committed continuation. Metadata lock held.
    /// </summary>
    private PrefixMatch Match(ModelSchema m, UInt128 root, ReadOnlySpan<int> tokens)
    {
        int b = m.BlockSize;
        var chain = new List<UInt128>();
        UInt128 h = root;
        while ((chain.Count + 1) * b <= tokens.Length)
        {
            UInt128 next = BlockHashing.Next(h, tokens.Slice(chain.Count * b, b));
            if (!_directory.IsComplete(next, m.NumLayers))
            {
                break;
            }

            chain.Add(next);
            h = next;
        }

        long matched = (long)chain.Count * b;
        KvContext? best = null;
        long bestExtra = 0;
        List<KvContext>? candidates = matched < tokens.Length ? _directory.ContextsAt(h) : null;
        if (candidates is not null)
        {
            foreach (KvContext c in candidates)
            {
                lock (c.Gate)
                {
                    if (c.Deleted || c.Model != m)
                    {
                        continue;
                    }

                    long limit = Math.Min(c.CommittedTokens, tokens.Length);
                    ReadOnlySpan<int> mine = CollectionsMarshal.AsSpan(c.TokenIds);
                    long n = matched;
                    while (n < limit && mine[(int)n] == tokens[(int)n])
                    {
                        n++;
                    }

                    if (n - matched > bestExtra)
                    {
                        bestExtra = n - matched;
                        best = c;
                    }
                }
            }
        }

        return new PrefixMatch(chain, best, bestExtra);
    }

    private KvContext Find(string id) =>
        _contexts.TryGetValue(id ?? string.Empty, out KvContext? c)
            ? c
            : throw KvDbException.NotFound($"context \"{id}\" does not exist; create it with Contexts.CreateContext (ids are case-sensitive)");

    /// <summary>Deletes expired contexts and takes a checkpoint when one is due.</summary>
    private void Maintain()
    {
        if (Interlocked.Exchange(ref _maintenanceRunning, 1) != 0)
        {
            return;
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            Volatile.Write(ref _maintenanceRunning, 0);
            return;
        }

        try
        {
            long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            foreach (KvContext c in _contexts.Values)
            {
                if (c.ExpiresAtUnixMs > 0 && c.ExpiresAtUnixMs <= now && DeleteContext(c.Id))
                {
                    Interlocked.Increment(ref _expired);
                }
            }

            ScrubOnce();
            MaybeCheckpoint();
        }
        catch (Exception e) when (e is KvDbException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            Report("background maintenance failed: " + e.Message);
        }
        finally
        {
            Volatile.Write(ref _maintenanceRunning, 0);
        }
    }

    /// <summary>Result of a prefix walk: chain values of fully cached blocks, and the best committed continuation.</summary>
    private sealed record PrefixMatch(List<UInt128> Chain, KvContext? Source, long Extra);
}

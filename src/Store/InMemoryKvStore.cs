using System.Collections.Concurrent;
using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// The first store: models and context manifests in memory, K/V blocks in the native slab arena.
/// Prefix sharing hands out references to full blocks; persistence and tiers plug in behind
/// <see cref="IKvStore"/>.
/// </summary>
public sealed class InMemoryKvStore : IKvStore
{
    private readonly ConcurrentDictionary<string, ModelSchema> _models = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, KvContext> _contexts = new(StringComparer.Ordinal);
    private readonly object _modelGate = new();
    private readonly NativeSlabArena _arena;

    /// <summary>Creates an empty store with the given options.</summary>
    public InMemoryKvStore(StoreOptions options)
    {
        Options = options;
        _arena = new NativeSlabArena(options.ResolvedCpuBudgetBytes);
    }

    /// <summary>The options the store was created with.</summary>
    public StoreOptions Options { get; }

    /// <inheritdoc />
    public ModelSchema CreateModel(ModelSchema model)
    {
        ModelSchema normalized = ModelSchema.Normalize(model);
        lock (_modelGate)
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
            return normalized;
        }
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
    public ContextInfo CreateContext(string model, string ns, string? id, ReadOnlySpan<int> prefixTokenIds)
    {
        ModelSchema schema = GetModel(model);
        ns ??= string.Empty;
        if (string.IsNullOrEmpty(id))
        {
            id = "ctx-" + Guid.NewGuid().ToString("N");
        }
        else if (id.Length > 256 || id.AsSpan().IndexOfAny('/', '\0') >= 0)
        {
            throw KvDbException.Invalid("context id must be at most 256 characters without '/' or NUL; leave it empty for a server-assigned id");
        }

        var context = new KvContext(id, schema, ns);
        if (!prefixTokenIds.IsEmpty)
        {
            SharePrefix(context, prefixTokenIds);
        }

        if (!_contexts.TryAdd(id, context))
        {
            foreach (ContextLayer l in context.Layers)
            {
                l.ReleaseAll();
            }

            throw new KvDbException(KvDbErrorCode.AlreadyExists, $"context \"{id}\" already exists; choose another id or leave it empty for a server-assigned one");
        }

        lock (context.Gate)
        {
            return context.Info();
        }
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
    public bool DeleteContext(string id)
    {
        if (!_contexts.TryRemove(id ?? string.Empty, out KvContext? c))
        {
            return false;
        }

        lock (c.Gate)
        {
            c.Deleted = true;
            foreach (ContextLayer l in c.Layers)
            {
                l.ReleaseAll();
            }

            c.TokenIds.Clear();
        }

        return true;
    }

    /// <inheritdoc />
    public IAppendTransaction BeginAppend(string contextId)
    {
        KvContext c = Find(contextId);
        lock (c.Gate)
        {
            if (c.AppendOpen)
            {
                throw new KvDbException(KvDbErrorCode.FailedPrecondition, $"context \"{contextId}\" already has an open AppendKv stream; send all layers of a context through one stream at a time");
            }

            c.AppendOpen = true;
            return new AppendTransaction(this, c);
        }
    }

    /// <inheritdoc />
    public LayerSnapshot OpenLayer(string contextId, int layer)
    {
        KvContext c = Find(contextId);
        c.Model.CheckLayer(layer);
        lock (c.Gate)
        {
            ContextLayer l = c.Layers[layer];
            var blocks = l.Blocks.ToArray();
            var views = new KvBlockRef[blocks.Length];
            long start = 0;
            for (int i = 0; i < blocks.Length; i++)
            {
                blocks[i].AddRef();
                int rows = (int)Math.Min(c.Model.BlockSize, l.Length - start);
                views[i] = blocks[i].View(rows, start);
                start += rows;
            }

            return new LayerSnapshot(c.Model, layer, blocks, views, l.Length);
        }
    }

    /// <inheritdoc />
    public long LookupPrefix(string model, string ns, ReadOnlySpan<int> tokenIds)
    {
        GetModel(model);
        long best = 0;
        foreach (KvContext c in _contexts.Values)
        {
            if (c.Model.Name != model || c.Namespace != (ns ?? string.Empty))
            {
                continue;
            }

            lock (c.Gate)
            {
                best = Math.Max(best, CommonPrefix(c, tokenIds));
            }
        }

        return best;
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

        return new StoreStats(_models.Count, _contexts.Count, blocks, _arena.UsedBytes, _arena.BudgetBytes, logical);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (string id in _contexts.Keys)
        {
            DeleteContext(id);
        }

        _arena.Dispose();
    }

    private static long CommonPrefix(KvContext c, ReadOnlySpan<int> tokenIds)
    {
        long limit = Math.Min(c.NumTokens, tokenIds.Length);
        long n = 0;
        while (n < limit && c.TokenIds[(int)n] == tokenIds[(int)n])
        {
            n++;
        }

        return n;
    }

    private static string Describe(ModelSchema m) =>
        $"layers {m.NumLayers}, query heads {m.NumQueryHeads}, kv heads {m.NumKvHeads}, head_dim {m.HeadDim}, dtype {KvDTypeInfo.Name(m.DType)}, block {m.BlockSize}, scale {m.SoftmaxScale}";

    /// <summary>Starts <paramref name="target"/> with the longest cached prefix: full blocks by reference, the partial last block copied.</summary>
    private void SharePrefix(KvContext target, ReadOnlySpan<int> prefix)
    {
        KvContext? source = null;
        long best = 0;
        foreach (KvContext c in _contexts.Values)
        {
            if (c.Model.Name != target.Model.Name || c.Namespace != target.Namespace)
            {
                continue;
            }

            lock (c.Gate)
            {
                long n = CommonPrefix(c, prefix);
                if (n > best)
                {
                    best = n;
                    source = c;
                }
            }
        }

        if (source is null)
        {
            return;
        }

        int blockSize = target.Model.BlockSize;
        lock (source.Gate)
        {
            best = Math.Min(best, CommonPrefix(source, prefix));
            for (int layer = 0; layer < target.Layers.Length; layer++)
            {
                List<KvBlock> from = source.Layers[layer].Blocks;
                ContextLayer to = target.Layers[layer];
                long full = best / blockSize;
                int rest = (int)(best % blockSize);
                for (int b = 0; b < full; b++)
                {
                    from[b].AddRef();
                    to.Blocks.Add(from[b]);
                }

                if (rest > 0)
                {
                    to.Blocks.Add(from[(int)full].CopyPrefix(rest));
                }

                to.Length = best;
            }

            for (int i = 0; i < best; i++)
            {
                target.TokenIds.Add(source.TokenIds[i]);
            }
        }
    }

    private KvContext Find(string id) =>
        _contexts.TryGetValue(id ?? string.Empty, out KvContext? c)
            ? c
            : throw KvDbException.NotFound($"context \"{id}\" does not exist; create it with Contexts.CreateContext (ids are case-sensitive)");

    private sealed class AppendTransaction : IAppendTransaction
    {
        private readonly InMemoryKvStore _store;
        private readonly KvContext _context;
        private readonly long[] _startLengths;
        private bool _done;

        public AppendTransaction(InMemoryKvStore store, KvContext context)
        {
            _store = store;
            _context = context;
            _startLengths = new long[context.Layers.Length];
            for (int i = 0; i < _startLengths.Length; i++)
            {
                _startLengths[i] = context.Layers[i].Length;
            }
        }

        public void Append(int layer, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
        {
            ObjectDisposedException.ThrowIf(_done, this);
            ModelSchema m = _context.Model;
            m.CheckLayer(layer);
            int n = tokenIds.Length;
            long expected = (long)n * m.NumKvHeads * m.RowBytes;
            if (n == 0)
            {
                throw KvDbException.Invalid("append chunk has no tokens; send at least one token id with keys and values of shape [n, num_kv_heads, head_dim]");
            }

            if (keys.Length != expected || values.Length != expected)
            {
                throw KvDbException.Invalid($"keys and values must each hold {n} tokens × {m.NumKvHeads} kv heads × {m.HeadDim} dims of {KvDTypeInfo.Name(m.DType)} = {expected} bytes; got {keys.Length} and {values.Length}");
            }

            lock (_context.Gate)
            {
                if (_context.Deleted)
                {
                    throw KvDbException.NotFound($"context \"{_context.Id}\" was deleted during the append");
                }

                ContextLayer l = _context.Layers[layer];
                long pos = l.Length;
                List<int> ids = _context.TokenIds;
                int overlap = (int)Math.Clamp(ids.Count - pos, 0, n);
                for (int i = 0; i < overlap; i++)
                {
                    if (ids[(int)pos + i] != tokenIds[i])
                    {
                        throw KvDbException.Invalid($"layer {layer}: token id at position {pos + i} is {tokenIds[i]} but another layer stored {ids[(int)pos + i]} there; every layer must receive the same token ids");
                    }
                }

                int written = 0;
                try
                {
                    while (written < n)
                    {
                        KvBlock tail;
                        if (l.Blocks.Count == 0 || l.Blocks[^1].IsFull)
                        {
                            tail = KvBlock.Allocate(_store._arena, m);
                            l.Blocks.Add(tail);
                        }
                        else
                        {
                            tail = l.Blocks[^1];
                        }

                        int take = Math.Min(n - written, tail.Capacity - tail.Count);
                        tail.AppendRows(keys, values, written, take);
                        written += take;
                        l.Length += take;
                    }
                }
                catch
                {
                    l.Truncate(pos, m.BlockSize);
                    throw;
                }

                for (int i = overlap; i < n; i++)
                {
                    ids.Add(tokenIds[i]);
                }
            }
        }

        public ContextInfo Commit()
        {
            ObjectDisposedException.ThrowIf(_done, this);
            lock (_context.Gate)
            {
                _done = true;
                _context.AppendOpen = false;
                return _context.Info();
            }
        }

        public void Dispose()
        {
            if (_done)
            {
                return;
            }

            lock (_context.Gate)
            {
                _done = true;
                _context.AppendOpen = false;
                if (_context.Deleted)
                {
                    return;
                }

                long maxLength = 0;
                for (int i = 0; i < _startLengths.Length; i++)
                {
                    _context.Layers[i].Truncate(_startLengths[i], _context.Model.BlockSize);
                    maxLength = Math.Max(maxLength, _context.Layers[i].Length);
                }

                if (_context.TokenIds.Count > maxLength)
                {
                    _context.TokenIds.RemoveRange((int)maxLength, _context.TokenIds.Count - (int)maxLength);
                }
            }
        }
    }
}

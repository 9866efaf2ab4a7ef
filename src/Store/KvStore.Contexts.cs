using System.Runtime.InteropServices;
using KvDb.Store.Durability;

namespace KvDb.Store;

// Context lifecycle: create (optionally from a cached prefix), fork, get, list, delete, and the directory's
// index of contexts by the chain values of their committed blocks.
public partial class KvStore
{
    private const int MaxPageSize = 1000;

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
    public ContextPage ListContexts(int pageSize, string? pageToken, string idPrefix = "")
    {
        if (pageSize < 0)
        {
            throw KvDbException.Invalid($"page_size must be ≥ 0 (0 = 100, at most {MaxPageSize}), got {pageSize}");
        }

        int size = pageSize == 0 ? 100 : Math.Min(pageSize, MaxPageSize);
        var ids = new List<string>(_contexts.Count);
        foreach (string id in _contexts.Keys)
        {
            if (id.StartsWith(idPrefix, StringComparison.Ordinal))
            {
                ids.Add(id);
            }
        }

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
    public bool DeleteContext(string id) => DeleteContext(id, KvDb.Store.Events.KvEventKind.ContextDeleted);

    /// <summary>Deletes a context, announcing it as <paramref name="reason"/> (deleted by a call, or expired).</summary>
    private bool DeleteContext(string id, KvDb.Store.Events.KvEventKind reason)
    {
        long address;
        lock (_opLock)
        {
            if (!_contexts.TryRemove(id ?? string.Empty, out KvContext? c))
            {
                return false;
            }

            address = Log(new ContextDeleteRecord(c.Id));
            lock (c.Gate)
            {
                int tokens = (int)Math.Min(int.MaxValue, c.NumTokens);
                SetPinned(c, false, PinTier.Cpu);
                c.Deleted = true;
                Unregister(c);
                foreach (ContextLayer l in c.Layers)
                {
                    l.ReleaseAll();
                }

                _directory.Events.Emit(reason, c.Model.Name, c.Id, tokens, string.Empty);
                c.TrimTokens(0);
            }

            _directory.Sweep();
        }

        WaitDurable(address);
        return true;
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
            long address = Log(new ContextCreateRecord(id, schema.Name, ns, createdMs, expiresMs, sharedIds));
            _contexts[id] = c;
            lock (c.Gate)
            {
                _directory.Register(c.Root, c);
                RegisterCommitted(c);
                _directory.Sweep();
                _directory.Events.Emit(KvDb.Store.Events.KvEventKind.ContextCreated, schema.Name, id, (int)shared, string.Empty);
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

            long address = Log(new ContextForkRecord(source.Id, newId, createdMs, c.ExpiresAtUnixMs));
            _contexts[newId] = c;
            lock (c.Gate)
            {
                _directory.Register(c.Root, c);
                RegisterCommitted(c);
                _directory.Events.Emit(KvDb.Store.Events.KvEventKind.ContextCreated, c.Model.Name, newId, (int)Math.Min(int.MaxValue, c.NumTokens), string.Empty);
                return (c.Info(), address);
            }
        }
    }

    /// <summary>Registers the context under the chain values of its newly committed full blocks (metadata lock and context gate held).</summary>
    private void RegisterCommitted(KvContext c)
    {
        long full = c.CommittedTokens / c.Model.BlockSize;
        for (int i = c.RegisteredBlocks; i < full; i++)
        {
            _directory.Register(c.Chain[i], c);
        }

        c.RegisteredBlocks = (int)Math.Max(c.RegisteredBlocks, full);
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
}

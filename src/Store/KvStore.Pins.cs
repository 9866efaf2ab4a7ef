using KvDb.Store.Durability;

namespace KvDb.Store;

// Context settings after creation: TTL updates and pins (a pinned context's full blocks hold a block pin each, so
// demotion and eviction pass them by, as they pass by the blocks of a query in flight).
public partial class KvStore
{
    /// <summary>Bytes of full blocks held by context pins (guarded by the metadata lock); at most half the CPU tier.</summary>
    private long _pinnedBytes;

    /// <summary>The CPU-tier bytes context pins hold now.</summary>
    public long PinnedBytes
    {
        get
        {
            lock (_opLock)
            {
                return _pinnedBytes;
            }
        }
    }

    /// <inheritdoc />
    public ContextInfo UpdateContext(string id, long? ttlSeconds, bool? pinned)
    {
        if (ttlSeconds is < 0 or > 10L * 365 * 24 * 3600)
        {
            throw KvDbException.Invalid($"ttl_seconds must be 0 (no expiry) or a positive number of seconds up to ten years, got {ttlSeconds}");
        }

        long address;
        ContextInfo info;
        lock (_opLock)
        {
            KvContext c = Find(id);
            long expires = ttlSeconds switch
            {
                null => c.ExpiresAtUnixMs,
                0 => 0,
                long s => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + (s * 1000),
            };
            bool pin = pinned ?? c.Pinned;
            lock (c.Gate)
            {
                // Pinning first: it may fail (no room), and then nothing is logged or changed.
                SetPinned(c, pin);
                c.ExpiresAtUnixMs = expires;
                info = c.Info();
            }

            address = Log(new ContextUpdateRecord(c.Id, expires, pin));
        }

        WaitDurable(address);
        return info;
    }

    /// <summary>Applies a replayed or checkpointed setting (recovery): as <see cref="UpdateContext"/>, without logging; a pin that no longer fits is dropped and reported.</summary>
    internal void ApplyContextSettings(string id, long expiresAtUnixMs, bool pinned)
    {
        lock (_opLock)
        {
            if (!_contexts.TryGetValue(id, out KvContext? c))
            {
                return;
            }

            lock (c.Gate)
            {
                c.ExpiresAtUnixMs = expiresAtUnixMs;
                try
                {
                    SetPinned(c, pinned);
                }
                catch (KvDbException e) when (e.Code == KvDbErrorCode.ResourceExhausted)
                {
                    ReportCorrupt($"context \"{id}\" was pinned but its blocks no longer fit the CPU tier's pinnable half ({e.Message}); it is left unpinned");
                }
            }
        }
    }

    /// <summary>Pins or unpins the context's blocks when that changes its state (metadata lock and gate held); a failed pin changes nothing.</summary>
    private void SetPinned(KvContext c, bool pin)
    {
        if (pin && !c.Pinned)
        {
            PinBlocks(c);
        }
        else if (!pin && c.Pinned)
        {
            UnpinBlocks(c);
        }

        c.Pinned = pin;
    }

    /// <summary>
    /// Pins the committed full blocks a commit added to a pinned context (metadata lock and gate held). Best effort:
    /// with no room left they stay unpinned (the commit stands) and the next commit tries again.
    /// </summary>
    private void PinNewBlocks(KvContext c)
    {
        try
        {
            PinBlocks(c);
        }
        catch (KvDbException e) when (e.Code == KvDbErrorCode.ResourceExhausted)
        {
        }
    }

    /// <summary>
    /// Pins every committed full block of <paramref name="c"/> beyond those it already pins (metadata lock and gate
    /// held), reading demoted ones back from disk; on failure unpins what this call pinned and throws.
    /// </summary>
    private void PinBlocks(KvContext c)
    {
        if (!Blocks.CanSpill)
        {
            // Without a disk tier nothing is ever demoted: every block already stays in the CPU tier.
            return;
        }

        c.PinnedPrefix ??= new int[c.Layers.Length];
        var added = new List<(int Layer, KvBlock Block)>();
        long bytes = 0;
        try
        {
            for (int layer = 0; layer < c.Layers.Length; layer++)
            {
                int full = (int)(c.CommittedLengths[layer] / c.Model.BlockSize);
                List<KvBlock> blocks = c.Layers[layer].Blocks;
                for (int i = c.PinnedPrefix[layer]; i < full && i < blocks.Count; i++)
                {
                    if (_pinnedBytes + bytes + c.Model.BlockBytes > Blocks.CpuBudgetBytes / 2)
                    {
                        throw new KvDbException(
                            KvDbErrorCode.ResourceExhausted,
                            $"pinning context \"{c.Id}\" would hold more than half of the CPU tier's {Blocks.CpuBudgetBytes} bytes ({_pinnedBytes} already pinned); unpin other contexts or start the server with a larger --cpu-budget");
                    }

                    Blocks.Pin(blocks[i]);
                    added.Add((layer, blocks[i]));
                    bytes += c.Model.BlockBytes;
                }
            }
        }
        catch
        {
            foreach ((_, KvBlock b) in added)
            {
                Blocks.Unpin(b);
            }

            throw;
        }

        foreach ((int layer, _) in added)
        {
            c.PinnedPrefix[layer]++;
        }

        _pinnedBytes += bytes;
    }

    /// <summary>Releases the pins <see cref="PinBlocks"/> took (metadata lock and gate held).</summary>
    private void UnpinBlocks(KvContext c)
    {
        if (c.PinnedPrefix is not int[] prefix)
        {
            return;
        }

        for (int layer = 0; layer < c.Layers.Length; layer++)
        {
            List<KvBlock> blocks = c.Layers[layer].Blocks;
            for (int i = 0; i < prefix[layer]; i++)
            {
                Blocks.Unpin(blocks[i]);
                _pinnedBytes -= c.Model.BlockBytes;
            }
        }

        c.PinnedPrefix = null;
    }
}

using KvDb.Kernels;
using KvDb.Store.Durability;

namespace KvDb.Store;

// Context settings after creation: TTL updates and pins. A pin names the tier its blocks are not demoted below: CPU (each
// committed full block holds a block pin, so demotion and eviction pass them by, as they pass by the blocks of a query in
// flight), GPU (the CPU pin plus every layer's mirrors held in the GPU tier) or DISK (recorded, holds nothing).
public partial class KvStore
{
    /// <summary>Bytes of full blocks held by context pins in the CPU tier (guarded by the metadata lock).</summary>
    private long _pinnedBytes;

    /// <summary>Device-tier bytes held by GPU pins (guarded by the metadata lock).</summary>
    private long _devicePinnedBytes;

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

    /// <summary>The GPU-tier bytes context pins hold now (block bytes of the mirrored full blocks).</summary>
    public long DevicePinnedBytes
    {
        get
        {
            lock (_opLock)
            {
                return _devicePinnedBytes;
            }
        }
    }

    /// <inheritdoc />
    public ContextInfo UpdateContext(string id, long? ttlSeconds, bool? pinned) => UpdateContext(id, ttlSeconds, pinned, null);

    /// <inheritdoc />
    public ContextInfo UpdateContext(string id, long? ttlSeconds, bool? pinned, PinTier? pinTier)
    {
        if (ttlSeconds is < 0 or > 10L * 365 * 24 * 3600)
        {
            throw KvDbException.Invalid($"ttl_seconds must be 0 (no expiry) or a positive number of seconds up to ten years, got {ttlSeconds}");
        }

        if (pinTier is PinTier named)
        {
            if (pinned == false)
            {
                throw KvDbException.Invalid("a pin tier was given with pinned = false: send the tier alone (or with pinned = true) to pin, pinned = false alone to unpin");
            }

            if (!Enum.IsDefined(named))
            {
                throw KvDbException.Invalid($"pin tier {(int)named} is not one of cpu, gpu, disk");
            }

            if (named == PinTier.Gpu && Blocks.Device is null)
            {
                throw new KvDbException(
                    KvDbErrorCode.FailedPrecondition,
                    $"this server has no GPU tier to pin context \"{id}\" to ({GpuTierStatus}); pin it to the CPU tier, or start the server with a GPU budget on a machine with CUDA");
            }
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
            bool pin = pinned ?? (pinTier is not null || c.Pinned);
            PinTier tier = pin ? pinTier ?? (pinned is null ? c.PinTier : PinTier.Cpu) : PinTier.Cpu;
            lock (c.Gate)
            {
                // Pinning first: it may fail (no room), and then nothing is logged or changed.
                SetPinned(c, pin, tier);
                c.ExpiresAtUnixMs = expires;
                info = c.Info();
            }

            address = Log(new ContextUpdateRecord(c.Id, expires, pin, tier));
        }

        WaitDurable(address);
        return info;
    }

    /// <summary>
    /// Applies a replayed or checkpointed setting (recovery): as <see cref="UpdateContext(string, long?, bool?, PinTier?)"/>,
    /// without logging; a pin that no longer fits is dropped and reported. A GPU pin recovered before the GPU tier is up
    /// holds the CPU tier only until <see cref="PinRecoveredDeviceContexts"/> runs.
    /// </summary>
    internal void ApplyContextSettings(string id, long expiresAtUnixMs, bool pinned, PinTier tier = PinTier.Cpu)
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
                    SetPinned(c, pinned, pinned ? tier : PinTier.Cpu);
                }
                catch (KvDbException e) when (e.Code is KvDbErrorCode.ResourceExhausted or KvDbErrorCode.FailedPrecondition)
                {
                    ReportCorrupt($"context \"{id}\" was pinned to the {tier} tier but its blocks no longer fit the pin quota ({e.Message}); it is left unpinned");
                }
            }
        }
    }

    /// <summary>
    /// After start: gives the contexts recovered with a GPU pin their GPU-tier mirrors. Without a GPU tier (or room in it)
    /// they keep their CPU pin and stay recorded as GPU pins (a later start with a GPU tier mirrors them); each is reported.
    /// </summary>
    private void PinRecoveredDeviceContexts()
    {
        lock (_opLock)
        {
            foreach (KvContext c in _contexts.Values)
            {
                lock (c.Gate)
                {
                    if (!c.Pinned || c.PinTier != PinTier.Gpu || c.DevicePins is not null)
                    {
                        continue;
                    }

                    if (Blocks.Device is null)
                    {
                        Report($"context \"{c.Id}\" is pinned to the GPU tier but this server has none ({GpuTierStatus}); its blocks are held in the CPU tier");
                        continue;
                    }

                    try
                    {
                        PinDevice(c);
                    }
                    catch (KvDbException e) when (e.Code == KvDbErrorCode.ResourceExhausted)
                    {
                        Report($"context \"{c.Id}\" is pinned to the GPU tier but its mirrors do not fit ({e.Message}); its blocks are held in the CPU tier");
                    }
                }
            }
        }
    }

    /// <summary>
    /// Moves the context's pin to (<paramref name="pin"/>, <paramref name="tier"/>), taking and releasing block pins and
    /// device mirrors as the tiers change (metadata lock and gate held); a failed pin changes nothing.
    /// </summary>
    private void SetPinned(KvContext c, bool pin, PinTier tier)
    {
        bool haveCpu = c.Pinned && c.PinTier != PinTier.Disk;
        bool wantCpu = pin && tier != PinTier.Disk;
        bool haveDevice = c.DevicePins is not null;

        // A GPU pin recorded on a server without a GPU tier (recovery) holds the CPU tier only.
        bool wantDevice = pin && tier == PinTier.Gpu && Blocks.Device is not null;
        bool pinnedCpu = false;
        if (wantCpu && !haveCpu)
        {
            PinBlocks(c);
            pinnedCpu = true;
        }

        if (wantDevice && !haveDevice)
        {
            try
            {
                PinDevice(c);
            }
            catch
            {
                if (pinnedCpu)
                {
                    UnpinBlocks(c);
                }

                throw;
            }
        }

        if (!wantDevice && haveDevice)
        {
            UnpinDevice(c);
        }

        if (!wantCpu && haveCpu)
        {
            UnpinBlocks(c);
        }

        c.Pinned = pin;
        c.PinTier = pin ? tier : PinTier.Cpu;
    }

    /// <summary>
    /// Pins the committed full blocks a commit added to a pinned context (metadata lock and gate held), and with a GPU pin
    /// mirrors them. Best effort: with no room left they stay unpinned (the commit stands) and the next commit tries again.
    /// </summary>
    private void PinNewBlocks(KvContext c)
    {
        if (!c.Pinned || c.PinTier == PinTier.Disk)
        {
            return;
        }

        try
        {
            PinBlocks(c);
            if (c.DevicePins is not null)
            {
                RefreshDevicePins(c);
            }
        }
        catch (KvDbException e) when (e.Code == KvDbErrorCode.ResourceExhausted)
        {
        }
    }

    /// <summary>The most bytes the pins of a tier of <paramref name="budget"/> bytes may hold together.</summary>
    private long PinQuota(long budget) => (long)(budget * Options.MaxPinnedFraction);

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
        long quota = PinQuota(Blocks.CpuBudgetBytes);
        try
        {
            for (int layer = 0; layer < c.Layers.Length; layer++)
            {
                int full = (int)(c.CommittedLengths[layer] / c.Model.BlockSize);
                List<KvBlock> blocks = c.Layers[layer].Blocks;
                for (int i = c.PinnedPrefix[layer]; i < full && i < blocks.Count; i++)
                {
                    if (_pinnedBytes + bytes + c.Model.BlockBytes > quota)
                    {
                        throw new KvDbException(
                            KvDbErrorCode.ResourceExhausted,
                            $"pinning context \"{c.Id}\" would hold more than the pin quota ({Options.MaxPinnedFraction:P0}) of the CPU tier's {Blocks.CpuBudgetBytes} bytes ({_pinnedBytes} already pinned); unpin other contexts or start the server with a larger --cpu-budget");
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

            if (c.PinnedPrefix is int[] prefix && Array.TrueForAll(prefix, n => n == 0))
            {
                c.PinnedPrefix = null;
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

    /// <summary>
    /// Mirrors every layer's committed full blocks into the GPU tier and holds the mirrors (metadata lock and gate held;
    /// the blocks are resident: CPU-pinned, or on a memory-only store never demoted). RESOURCE_EXHAUSTED, holding nothing,
    /// when they would exceed the GPU pin quota or do not fit.
    /// </summary>
    private void PinDevice(KvContext c)
    {
        IDeviceTier device = Blocks.Device ?? throw new KvDbException(KvDbErrorCode.FailedPrecondition, "this server has no GPU tier");
        var pins = new DeviceLayer?[c.Layers.Length];
        long bytes = MirrorLayers(c, device, pins, _devicePinnedBytes);
        c.DevicePins = pins;
        c.DevicePinnedBytes = bytes;
        _devicePinnedBytes += bytes;
    }

    /// <summary>Re-mirrors a GPU-pinned context after a commit added full blocks (the old handles go once the new ones hold the mirrors).</summary>
    private void RefreshDevicePins(KvContext c)
    {
        if (c.DevicePins is not DeviceLayer?[] old || Blocks.Device is not IDeviceTier device)
        {
            return;
        }

        var pins = new DeviceLayer?[c.Layers.Length];
        long bytes = MirrorLayers(c, device, pins, _devicePinnedBytes - c.DevicePinnedBytes);
        foreach (DeviceLayer? layer in old)
        {
            layer?.Dispose();
        }

        _devicePinnedBytes += bytes - c.DevicePinnedBytes;
        c.DevicePins = pins;
        c.DevicePinnedBytes = bytes;
    }

    /// <summary>Fills <paramref name="pins"/> with each layer's mirrored full blocks; on failure disposes them and throws RESOURCE_EXHAUSTED.</summary>
    private long MirrorLayers(KvContext c, IDeviceTier device, DeviceLayer?[] pins, long othersBytes)
    {
        long quota = PinQuota(device.BudgetBytes);
        long bytes = 0;
        try
        {
            for (int layer = 0; layer < c.Layers.Length; layer++)
            {
                int full = (int)Math.Min(c.CommittedLengths[layer] / c.Model.BlockSize, c.Layers[layer].Blocks.Count);

                // With a disk tier only the blocks the CPU pin holds are sure to stay resident while they are copied.
                if (Blocks.CanSpill)
                {
                    full = Math.Min(full, c.PinnedPrefix?[layer] ?? 0);
                }

                if (full == 0)
                {
                    continue;
                }

                bytes += full * c.Model.BlockBytes;
                if (othersBytes + bytes > quota)
                {
                    throw new KvDbException(
                        KvDbErrorCode.ResourceExhausted,
                        $"pinning context \"{c.Id}\" to the GPU tier would hold more than the pin quota ({Options.MaxPinnedFraction:P0}) of its {device.BudgetBytes} bytes ({othersBytes} already pinned); pin it to the CPU tier or unpin other contexts");
                }

                List<KvBlock> blocks = c.Layers[layer].Blocks.GetRange(0, full);
                var views = new KvBlockRef[full];
                for (int i = 0; i < full; i++)
                {
                    views[i] = blocks[i].View(c.Model.BlockSize, (long)i * c.Model.BlockSize);
                }

                pins[layer] = device.TryMirrorLayer(c.Model, blocks, views, (long)full * c.Model.BlockSize, out string reason)
                    ?? throw new KvDbException(KvDbErrorCode.ResourceExhausted, $"context \"{c.Id}\" layer {layer} cannot be pinned to the GPU tier: {reason}");
            }
        }
        catch
        {
            foreach (DeviceLayer? layer in pins)
            {
                layer?.Dispose();
            }

            Array.Clear(pins);
            throw;
        }

        return bytes;
    }

    /// <summary>Releases the mirrors <see cref="PinDevice"/> holds (metadata lock and gate held).</summary>
    private void UnpinDevice(KvContext c)
    {
        if (c.DevicePins is not DeviceLayer?[] pins)
        {
            return;
        }

        foreach (DeviceLayer? layer in pins)
        {
            layer?.Dispose();
        }

        _devicePinnedBytes -= c.DevicePinnedBytes;
        c.DevicePins = null;
        c.DevicePinnedBytes = 0;
    }
}

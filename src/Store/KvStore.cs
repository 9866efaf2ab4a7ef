using System.Collections.Concurrent;
using KvDb.Store.Durability;
using Microsoft.Extensions.Logging;

namespace KvDb.Store;

/// <summary>
/// The store: models and context manifests in memory, K/V in immutable content-addressed full blocks shared
/// through a global block directory (plus one open tail block per context layer), tiered between the CPU
/// arena and, with a data directory, a disk block log; every change is written ahead to a FasterLog and
/// periodically checkpointed, so every acknowledged operation survives a crash.
/// Lock order: metadata lock → context gate → block gate → arena.
/// </summary>
/// <remarks>
/// One aspect per file: this one holds construction, models, stats and disposal; KvStore.Contexts (context
/// lifecycle), KvStore.Appends (append transactions), KvStore.Prefix (prefix matching and sharing),
/// KvStore.Snapshots (pinned reads), KvStore.Maintenance (TTL expiry, eviction), KvStore.Durability (write-ahead
/// log), KvStore.Checkpoint, KvStore.Recovery and KvStore.Scrub. Models live in a <see cref="ModelRegistry"/> and
/// the GPU tier is brought up by <see cref="GpuTierBringUp"/>.
/// </remarks>
public partial class KvStore : IKvStore
{
    private readonly ModelRegistry _models = new();
    private readonly ConcurrentDictionary<string, KvContext> _contexts = new(StringComparer.Ordinal);
    private readonly Lock _opLock = new();
    private readonly NativeSlabArena _arena;
    private readonly BlockDirectory _directory = new();

    /// <inheritdoc />
    public Events.KvEventHub Events => _directory.Events;
    private readonly CudaDeviceTier? _gpu;
    private int _disposed;

    /// <summary>Creates a store; with <see cref="StoreOptions.DataDirectory"/> set it recovers what the directory holds first.</summary>
    public KvStore(StoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        if (options.MaxPinnedFraction is not (>= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxPinnedFraction, "MaxPinnedFraction must be between 0 and 1");
        }

        _arena = new NativeSlabArena(options.ResolvedCpuBudgetBytes);
        if (options.DataDirectory is string dir)
        {
            Blocks = OpenDurable(dir);
        }
        else
        {
            Blocks = new BlockManager(_arena, null, _directory, options.EvictionPolicy);
        }

        _gpu = GpuTierBringUp.Open(options, out string gpuStatus);
        GpuTierStatus = gpuStatus;
        if (_gpu is null && options.GpuBudgetBytes > 0)
        {
            Report(GpuTierStatus);
        }

        Blocks.Device = _gpu;
        PinRecoveredDeviceContexts();

        if (options.MaintenanceInterval > TimeSpan.Zero)
        {
            _timer = new Timer(_ => Maintain(), null, options.MaintenanceInterval, options.MaintenanceInterval);
        }
    }

    /// <summary>The options the store was created with.</summary>
    public StoreOptions Options { get; }

    /// <summary>What became of <see cref="StoreOptions.GpuBudgetBytes"/>: "gpu tier: …" when on, "gpu tier off: …" with the reason otherwise.</summary>
    public string GpuTierStatus { get; }

    /// <summary>The GPU tier, or null when it is off.</summary>
    public CudaDeviceTier? DeviceTier => _gpu;

    /// <summary>The tier manager (CPU arena and, with a data directory, the disk tier).</summary>
    public BlockManager Blocks { get; private set; }

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
            if (!_models.TryAdd(normalized, out ModelSchema registered))
            {
                return registered;
            }

            address = Log(new ModelRecord(normalized));
        }

        WaitDurable(address);
        return normalized;
    }

    /// <inheritdoc />
    public ModelSchema GetModel(string name) => _models.Get(name);

    /// <inheritdoc />
    public IReadOnlyList<ModelSchema> ListModels() => _models.List();

    /// <inheritdoc />
    public string? DataDirectory => Options.DataDirectory;

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
            Demotions = Blocks.Demotions,
            EvictionPolicy = Blocks.Policy,
            SharedBlocks = _directory.PublishedBlocks,
            DedupeHits = Interlocked.Read(ref _dedupeHits),
            CorruptRecords = Interlocked.Read(ref _corrupt) + Blocks.CorruptBlocks,
            ExpiredContexts = Interlocked.Read(ref _expired),
            WalBytes = _wal is null ? 0 : _wal.TailAddress - _wal.BeginAddress,
            Durable = Durable,
            Disk = GetDiskSpace(),
        };
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

    private KvContext Find(string id) =>
        _contexts.TryGetValue(id ?? string.Empty, out KvContext? c)
            ? c
            : throw KvDbException.NotFound($"context \"{id}\" does not exist; create it with Contexts.CreateContext (ids are case-sensitive)");

    private void Report(string problem)
    {
        if (Options.Logger is ILogger logger)
        {
            logger.LogWarning("kvdb store: {Problem}", problem);
        }
        else
        {
            Console.Error.WriteLine("kvdb store: " + problem);
        }
    }
}

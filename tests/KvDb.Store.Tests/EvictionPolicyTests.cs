using KvDb.TestKit;

namespace KvDb.Store.Tests;

/// <summary>
/// The CPU tier's eviction policy: LRU by default; TinyLFU keeps a frequently read block through a scan of blocks read
/// once, where LRU demotes it (counted by the CPU tier's real hits and misses).
/// </summary>
public sealed class EvictionPolicyTests : IDisposable
{
    private const int Tokens = 64; // 4 full blocks of 16
    private const int ScanContexts = 30;
    private readonly TempDirectory _dir = new();

    // One layer, 2 KV heads, d = 16, f32, blocks of 16 tokens: 4 KiB a block.
    private readonly ModelSchema _m = ModelSchema.Normalize(new ModelSchema("m", 1, 4, 2, 16, KvDType.F32, 16, 0));

    [Fact]
    public void The_default_policy_is_lru()
    {
        Assert.Equal(EvictionPolicy.Lru, new StoreOptions().EvictionPolicy);
        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = 1 << 20, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        Assert.Equal((EvictionPolicy.Lru, EvictionPolicy.Lru), (store.Blocks.Policy, store.GetStats().EvictionPolicy));
        store.CreateModel(_m);
        store.CreateContext("m", "", "c", []);
        TestData.Append(store, "c", _m, TestData.Tokens(Tokens), seed: 1);
        using (store.OpenLayer("c", 0))
        {
        }

        // LRU keeps no frequency sketch.
        Assert.Equal(0, store.Blocks.EstimatedFrequency(First(store, "c")));
    }

    [Theory]
    [InlineData(EvictionPolicy.Lru, 0, 4)]
    [InlineData(EvictionPolicy.TinyLfu, 4, 0)]
    public void A_frequently_read_context_survives_a_scan_only_under_tinylfu(EvictionPolicy policy, long hits, long misses)
    {
        // 40 blocks of CPU tier: the hot context (4 blocks) and 30 scan contexts (120 blocks) do not fit.
        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = 40 * _m.BlockBytes, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero, EvictionPolicy = policy });
        Assert.Equal(policy, store.GetStats().EvictionPolicy);
        store.CreateModel(_m);
        Load(store, "hot", seed: 1);
        for (int i = 0; i < ScanContexts; i++)
        {
            Load(store, "scan" + i, seed: (ulong)(i + 2));
        }

        store.Evict(0);
        for (int i = 0; i < 10; i++)
        {
            Read(store, "hot");
        }

        if (policy == EvictionPolicy.TinyLfu)
        {
            // The append (the block filling up) and the ten reads, none lost.
            Assert.InRange(store.Blocks.EstimatedFrequency(First(store, "hot")), 11, FrequencySketch.MaxCount);
        }

        for (int i = 0; i < ScanContexts; i++)
        {
            Read(store, "scan" + i);
        }

        Assert.True(store.GetStats().Demotions > 0);
        (long hits0, long misses0) = Cpu(store);
        Read(store, "hot");
        (long hits1, long misses1) = Cpu(store);
        Assert.Equal((hits, misses), (hits1 - hits0, misses1 - misses0));
        TestData.AssertExact(store, "hot", _m, Tokens, seed: 1);
    }

    public void Dispose() => _dir.Dispose();

    private static KvBlock First(KvStore store, string id) => store.BlocksOf(id, 0)[0];

    private static (long Hits, long Misses) Cpu(KvStore store)
    {
        TierStats cpu = store.GetStats().Tiers[0];
        Assert.Equal("cpu", cpu.Name);
        return (cpu.Hits, cpu.Misses);
    }

    private static void Read(KvStore store, string id)
    {
        using LayerSnapshot layer = store.OpenLayer(id, 0);
        Assert.Equal(Tokens, layer.Tokens);
    }

    private void Load(KvStore store, string id, ulong seed)
    {
        store.CreateContext("m", "", id, []);
        TestData.Append(store, id, _m, TestData.Tokens(Tokens, (int)seed * 1000), seed: seed);
    }
}

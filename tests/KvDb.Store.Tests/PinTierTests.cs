using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.TestKit;

namespace KvDb.Store.Tests;

/// <summary>
/// Pins to a named tier: DISK is recorded and holds nothing, CPU holds the blocks in the CPU tier, GPU needs a GPU tier
/// (FAILED_PRECONDITION without one) and holds the layers' mirrors there; the tier survives a restart (log and checkpoint).
/// </summary>
public sealed class PinTierTests : IDisposable
{
    private const int Tokens = 2000; // 125 full blocks per layer
    private readonly TempDirectory _dir = new();
    private readonly ModelSchema _m = ModelSchema.Normalize(TestData.Small());

    private long ContextBytes => _m.NumLayers * 125 * _m.BlockBytes;

    [Fact]
    public void A_disk_pin_is_recorded_but_holds_nothing_and_a_cpu_pin_holds_the_blocks()
    {
        using KvStore store = Open();
        Load(store, "a:ns", "a:disk", seed: 1);
        Load(store, "b:ns", "b:cpu", seed: 2);

        ContextInfo disk = store.UpdateContext("a:disk", null, null, PinTier.Disk);
        Assert.Equal((true, PinTier.Disk), (disk.Pinned, disk.PinTier));
        ContextInfo cpu = store.UpdateContext("b:cpu", null, true, PinTier.Cpu);
        Assert.Equal((true, PinTier.Cpu), (cpu.Pinned, cpu.PinTier));
        Assert.Equal(ContextBytes, store.PinnedBytes);
        store.Evict(0);
        Assert.Equal((0L, ContextBytes), (store.Blocks.ResidentBytes("a"), store.Blocks.ResidentBytes("b")));

        // Moving a pin between tiers takes and releases the block pins; a TTL-only update keeps the tier.
        Assert.Equal(PinTier.Cpu, store.UpdateContext("a:disk", null, null, PinTier.Cpu).PinTier);
        Assert.Equal(PinTier.Disk, store.UpdateContext("b:cpu", null, null, PinTier.Disk).PinTier);
        Assert.Equal(PinTier.Cpu, store.UpdateContext("a:disk", ttlSeconds: 600, pinned: null).PinTier);
        Assert.Equal(ContextBytes, store.PinnedBytes);
        store.Evict(0);
        Assert.Equal((ContextBytes, 0L), (store.Blocks.ResidentBytes("a"), store.Blocks.ResidentBytes("b")));

        // pinned = true without a tier is a CPU pin; a tier with pinned = false is refused.
        Assert.Equal(PinTier.Cpu, store.UpdateContext("b:cpu", null, true).PinTier);
        Assert.Equal(KvDbErrorCode.InvalidArgument, Assert.Throws<KvDbException>(() => store.UpdateContext("b:cpu", null, false, PinTier.Disk)).Code);
        ContextInfo unpinned = store.UpdateContext("b:cpu", null, false);
        Assert.Equal((false, PinTier.Cpu), (unpinned.Pinned, unpinned.PinTier));
    }

    [Fact]
    public void A_gpu_pin_without_a_gpu_tier_is_a_failed_precondition_that_changes_nothing()
    {
        using KvStore store = Open();
        Load(store, "a:ns", "a:c", seed: 1);
        var e = Assert.Throws<KvDbException>(() => store.UpdateContext("a:c", 60, true, PinTier.Gpu));
        Assert.Equal(KvDbErrorCode.FailedPrecondition, e.Code);
        ContextInfo c = store.GetContext("a:c");
        Assert.Equal((false, 0L, 0L), (c.Pinned, c.ExpiresAtUnixMs, store.PinnedBytes));
    }

    [Fact]
    public void A_gpu_pin_holds_every_layer_s_mirrors_until_unpinned_within_the_quota()
    {
        using KvStore store = Open();
        var device = new FakeDeviceTier(budget: 5 * ContextBytes);
        store.Blocks.Device = device;
        Load(store, "a:ns", "a:gpu", seed: 1);
        Load(store, "a:ns", "a:two", seed: 2);

        ContextInfo pinned = store.UpdateContext("a:gpu", null, true, PinTier.Gpu);
        Assert.Equal((true, PinTier.Gpu), (pinned.Pinned, pinned.PinTier));
        Assert.Equal((ContextBytes, ContextBytes), (store.PinnedBytes, store.DevicePinnedBytes));
        Assert.Equal((2, 250), (device.Held, device.HeldBlocks));
        store.Evict(0);
        Assert.Equal(ContextBytes, store.Blocks.ResidentBytes("a"));

        // A commit re-mirrors the grown layers (the old handles go once the new ones hold the mirrors).
        TestData.Append(store, "a:gpu", _m, TestData.Tokens(Tokens, 10_000 + Tokens), from: Tokens, seed: 1, chunk: 500);
        Assert.Equal((2, 500), (device.Held, device.HeldBlocks));
        Assert.Equal(2 * ContextBytes, store.DevicePinnedBytes);

        // Half the GPU tier is the quota: a second GPU pin does not fit and changes nothing.
        var e = Assert.Throws<KvDbException>(() => store.UpdateContext("a:two", null, true, PinTier.Gpu));
        Assert.Equal(KvDbErrorCode.ResourceExhausted, e.Code);
        Assert.False(store.GetContext("a:two").Pinned);
        Assert.Equal(2 * ContextBytes, store.PinnedBytes);

        // Down to CPU: the mirrors go, the block pins stay.
        Assert.Equal(PinTier.Cpu, store.UpdateContext("a:gpu", null, true, PinTier.Cpu).PinTier);
        Assert.Equal((0, 0L, 2 * ContextBytes), (device.Held, store.DevicePinnedBytes, store.PinnedBytes));
        store.UpdateContext("a:gpu", null, null, PinTier.Gpu);
        Assert.True(store.DeleteContext("a:gpu"));
        Assert.Equal((0, 0L, 0L), (device.Held, store.DevicePinnedBytes, store.PinnedBytes));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_pin_tier_survives_a_restart(bool checkpoint)
    {
        using (KvStore store = Open())
        {
            Load(store, "a:ns", "a:disk", seed: 1);
            Load(store, "b:ns", "b:cpu", seed: 2);
            Load(store, "c:ns", "c:gpu", seed: 3);
            store.Blocks.Device = new FakeDeviceTier(budget: 4 * ContextBytes);
            store.UpdateContext("a:disk", null, true, PinTier.Disk);
            store.UpdateContext("b:cpu", null, true, PinTier.Cpu);
            store.UpdateContext("c:gpu", null, true, PinTier.Gpu);
            if (checkpoint)
            {
                store.Checkpoint();
            }
        }

        using (KvStore store = Open())
        {
            Assert.Equal((true, PinTier.Disk), (store.GetContext("a:disk").Pinned, store.GetContext("a:disk").PinTier));
            Assert.Equal((true, PinTier.Cpu), (store.GetContext("b:cpu").Pinned, store.GetContext("b:cpu").PinTier));

            // Restarted without a GPU tier: the GPU pin stays recorded and holds the CPU tier.
            Assert.Equal((true, PinTier.Gpu), (store.GetContext("c:gpu").Pinned, store.GetContext("c:gpu").PinTier));
            Assert.Equal(0, store.DevicePinnedBytes);
            store.Evict(0);
            Assert.Equal((0L, ContextBytes, ContextBytes), (store.Blocks.ResidentBytes("a"), store.Blocks.ResidentBytes("b"), store.Blocks.ResidentBytes("c")));
            TestData.AssertExact(store, "c:gpu", _m, Tokens, seed: 3);
        }
    }

    public void Dispose() => _dir.Dispose();

    private KvStore Open()
    {
        var store = new KvStore(new StoreOptions { CpuBudgetBytes = 8 * ContextBytes, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        store.CreateModel(_m);
        return store;
    }

    private void Load(KvStore store, string ns, string id, ulong seed)
    {
        store.CreateContext("m", ns, id, []);
        TestData.Append(store, id, _m, TestData.Tokens(Tokens, (int)seed * 10_000), seed: seed, chunk: 500);
    }

    /// <summary>A GPU tier without a GPU: it counts the layer handles (and their blocks) held, and checks the blocks are resident.</summary>
    private sealed class FakeDeviceTier(long budget) : IDeviceTier
    {
        public int Held { get; private set; }

        public int HeldBlocks { get; private set; }

        public string Name => "gpu";

        public long BudgetBytes => budget;

        public TierStats GetStats() => new("gpu", 0, HeldBlocks, 0, 0);

        public nint TryMirror(KvBlock block) => 0;

        public void Drop(KvBlock block)
        {
        }

        public DeviceLayer? TryMirrorLayer(ModelSchema model, IReadOnlyList<KvBlock> blocks, ReadOnlySpan<KvBlockRef> views, long tokens, out string reason)
        {
            Assert.Equal(blocks.Count, views.Length);
            Assert.All(blocks, b => Assert.True(b.IsResident));
            Held++;
            HeldBlocks += blocks.Count;
            int count = blocks.Count;
            reason = "";
            return new DeviceLayer(model.Geometry, GpuKvSource.Blocks(0, tokens), 0, count, count, () =>
            {
                Held--;
                HeldBlocks -= count;
            });
        }
    }
}

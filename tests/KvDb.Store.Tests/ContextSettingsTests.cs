using KvDb.TestKit;

namespace KvDb.Store.Tests;

/// <summary>
/// UpdateContext: pins hold a context's blocks in the CPU tier through demotion and eviction, take new blocks as
/// they are committed, are limited to half the tier, and survive a restart (log replay and checkpoint) with the TTL.
/// </summary>
public sealed class ContextSettingsTests : IDisposable
{
    private const int Tokens = 2000; // 125 full blocks per layer, no partial tail
    private readonly TempDirectory _dir = new();
    private readonly ModelSchema _m = ModelSchema.Normalize(TestData.Small());

    private long ContextBytes => _m.NumLayers * 125 * _m.BlockBytes;

    [Fact]
    public void A_pinned_context_stays_in_the_cpu_tier_through_eviction_and_unpinning_releases_it()
    {
        using KvStore store = Open(budget: 4 * ContextBytes);
        Load(store, "a:ns", "a:pinned", seed: 1);
        Load(store, "b:ns", "b:other", seed: 2);

        // Pinning reads demoted blocks back first.
        store.Evict(0);
        Assert.Equal(0, store.Blocks.ResidentBytes("a"));
        ContextInfo pinned = store.UpdateContext("a:pinned", ttlSeconds: null, pinned: true);
        Assert.True(pinned.Pinned);
        Assert.Equal(ContextBytes, store.Blocks.ResidentBytes("a"));
        Assert.Equal(ContextBytes, store.PinnedBytes);

        store.Evict(0);
        Assert.Equal((ContextBytes, 0L), (store.Blocks.ResidentBytes("a"), store.Blocks.ResidentBytes("b")));

        // Blocks committed while pinned are pinned too.
        TestData.Append(store, "a:pinned", _m, TestData.Tokens(Tokens, 10_000 + Tokens), from: Tokens, seed: 1, chunk: 500);
        store.Evict(0);
        Assert.Equal(2 * ContextBytes, store.Blocks.ResidentBytes("a"));

        Assert.False(store.UpdateContext("a:pinned", null, pinned: false).Pinned);
        Assert.Equal(0, store.PinnedBytes);
        store.Evict(0);
        Assert.Equal(0, store.Blocks.ResidentBytes("a"));
        Assert.Equal(2 * Tokens, store.GetContext("a:pinned").NumTokens);
        TestData.AssertExact(store, "b:other", _m, Tokens, seed: 2);
    }

    [Fact]
    public void Pins_may_hold_at_most_half_of_the_cpu_tier_and_a_refused_pin_changes_nothing()
    {
        using KvStore store = Open(budget: 3 * ContextBytes);
        Load(store, "a:ns", "a:one", seed: 1);
        Load(store, "a:ns", "a:two", seed: 2);
        store.UpdateContext("a:one", null, true);

        var e = Assert.Throws<KvDbException>(() => store.UpdateContext("a:two", ttlSeconds: 60, pinned: true));
        Assert.Equal(KvDbErrorCode.ResourceExhausted, e.Code);
        ContextInfo two = store.GetContext("a:two");
        Assert.Equal((false, 0L), (two.Pinned, two.ExpiresAtUnixMs));
        Assert.Equal(ContextBytes, store.PinnedBytes);

        // Deleting a pinned context gives its pins back.
        Assert.True(store.DeleteContext("a:one"));
        Assert.Equal(0, store.PinnedBytes);
        Assert.True(store.UpdateContext("a:two", null, true).Pinned);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Pin_and_ttl_survive_a_restart(bool checkpoint)
    {
        long expires;
        using (KvStore store = Open(budget: 4 * ContextBytes))
        {
            Load(store, "a:ns", "a:kept", seed: 1);
            Load(store, "b:ns", "b:ttl", seed: 2);
            store.UpdateContext("a:kept", null, true);
            expires = store.UpdateContext("b:ttl", ttlSeconds: 3600, pinned: null).ExpiresAtUnixMs;
            Assert.InRange(expires - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), 3_500_000, 3_600_000);
            if (checkpoint)
            {
                store.Checkpoint();
            }
        }

        using (KvStore store = Open(budget: 4 * ContextBytes))
        {
            Assert.True(store.GetContext("a:kept").Pinned);
            Assert.Equal(0, store.GetContext("a:kept").ExpiresAtUnixMs);
            Assert.Equal((false, expires), (store.GetContext("b:ttl").Pinned, store.GetContext("b:ttl").ExpiresAtUnixMs));
            store.Evict(0);
            Assert.Equal((ContextBytes, 0L), (store.Blocks.ResidentBytes("a"), store.Blocks.ResidentBytes("b")));

            // TTL 0 removes the expiry.
            Assert.Equal(0, store.UpdateContext("b:ttl", ttlSeconds: 0, pinned: null).ExpiresAtUnixMs);
            TestData.AssertExact(store, "a:kept", _m, Tokens, seed: 1);
        }
    }

    [Fact]
    public void A_shortened_ttl_expires_the_context_and_bad_settings_are_refused()
    {
        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = 4 * ContextBytes, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.FromMilliseconds(50) });
        store.CreateModel(_m);
        store.CreateContext("m", "", "soon", [], 3600);
        store.UpdateContext("soon", ttlSeconds: 1, pinned: null);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.GetStats().ExpiredContexts == 0 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(50);
        }

        Assert.Equal(KvDbErrorCode.NotFound, Assert.Throws<KvDbException>(() => store.GetContext("soon")).Code);
        Assert.Equal(KvDbErrorCode.NotFound, Assert.Throws<KvDbException>(() => store.UpdateContext("soon", 10, null)).Code);
        store.CreateContext("m", "", "c", []);
        Assert.Equal(KvDbErrorCode.InvalidArgument, Assert.Throws<KvDbException>(() => store.UpdateContext("c", -1, null)).Code);
        Assert.Equal(0, store.GetContext("c").ExpiresAtUnixMs);
    }

    public void Dispose() => _dir.Dispose();

    private KvStore Open(long budget)
    {
        var store = new KvStore(new StoreOptions { CpuBudgetBytes = budget, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        store.CreateModel(_m);
        return store;
    }

    private void Load(KvStore store, string ns, string id, ulong seed)
    {
        store.CreateContext("m", ns, id, []);
        TestData.Append(store, id, _m, TestData.Tokens(Tokens, (int)seed * 10_000), seed: seed, chunk: 500);
    }
}

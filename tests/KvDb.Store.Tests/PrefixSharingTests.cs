using KvDb.Store;

namespace KvDb.Store.Tests;

public sealed class PrefixSharingTests : IDisposable
{
    private const int Prefix = 10_000;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 64L << 20 });
    private readonly ModelSchema _m;

    public PrefixSharingTests()
    {
        _m = _store.CreateModel(TestData.Small());
    }

    [Fact]
    public void Shared_10k_prefix_is_stored_once_and_survives_deleting_either_context()
    {
        int[] a = [.. TestData.Tokens(Prefix), .. TestData.Tokens(500, 1_000_003)];
        int[] bSuffix = TestData.Tokens(700, 2_000_007);
        _store.CreateContext("m", "docs", "a", []);
        TestData.Append(_store, "a", _m, a);
        long afterA = _store.GetStats().CpuBytes;
        Assert.Equal(2 * 657 * _m.BlockBytes, afterA);

        ContextInfo b = _store.CreateContext("m", "docs", "b", a.AsSpan(0, Prefix));
        Assert.Equal(Prefix, b.NumTokens);
        Assert.Equal(afterA, _store.GetStats().CpuBytes); // 10 000 = 625 full blocks: all shared, nothing copied
        TestData.Append(_store, "b", _m, bSuffix, from: Prefix);
        Assert.Equal(afterA + (2 * 44 * _m.BlockBytes), _store.GetStats().CpuBytes);

        int[] bAll = [.. a.AsSpan(0, Prefix), .. bSuffix];
        Assert.Equal(Prefix + 700, _store.LookupPrefix("m", "docs", bAll));
        Assert.Equal(Prefix + 500, _store.LookupPrefix("m", "docs", a));
        int[] diverged = (int[])bAll.Clone();
        diverged[5003] ^= 1;
        Assert.Equal(5003, _store.LookupPrefix("m", "docs", diverged));
        Assert.Equal(0, _store.LookupPrefix("m", "other", bAll));
        Assert.Equal(0, _store.LookupPrefix("m", "", bAll));

        Assert.True(_store.DeleteContext("a"));
        TestData.AssertExact(_store, "b", _m, Prefix + 700);
        Assert.Equal(2 * (625 + 44) * _m.BlockBytes, _store.GetStats().CpuBytes);
        Assert.True(_store.DeleteContext("b"));
        Assert.Equal(0, _store.GetStats().CpuBytes);
        Assert.Equal(0, _store.GetStats().SharedBlocks);
    }

    [Fact]
    public void Appending_identical_full_blocks_reuses_the_cached_copy()
    {
        int[] ids = TestData.Tokens(1000);
        _store.CreateContext("m", "", "x", []);
        TestData.Append(_store, "x", _m, ids);
        long one = _store.GetStats().CpuBytes;
        _store.CreateContext("m", "", "y", []);
        TestData.Append(_store, "y", _m, ids, chunk: 333);
        StoreStats s = _store.GetStats();
        Assert.Equal(2 * 62, s.DedupeHits); // 62 full blocks per layer; the 8-token tails stay private
        Assert.Equal(one + (2 * _m.BlockBytes), s.CpuBytes);
        Assert.Equal(2 * 62, s.SharedBlocks);
        Assert.True(_store.DeleteContext("x"));
        TestData.AssertExact(_store, "y", _m, 1000);
    }

    [Fact]
    public void Identical_tokens_with_different_bytes_are_not_deduplicated()
    {
        int[] ids = TestData.Tokens(64);
        _store.CreateContext("m", "", "x", []);
        TestData.Append(_store, "x", _m, ids);
        _store.CreateContext("m", "", "y", []);
        TestData.Append(_store, "y", _m, ids, seed: 99);
        Assert.Equal(0, _store.GetStats().DedupeHits);
        TestData.AssertExact(_store, "y", _m, 64, seed: 99);
        TestData.AssertExact(_store, "x", _m, 64);
    }

    [Fact]
    public void Fork_copies_by_reference_and_outlives_its_source()
    {
        int[] ids = TestData.Tokens(100);
        _store.CreateContext("m", "ns", "src", []);
        TestData.Append(_store, "src", _m, ids);
        long before = _store.GetStats().CpuBytes;
        ContextInfo fork = _store.ForkContext("src", "dst");
        Assert.Equal(100, fork.NumTokens);
        Assert.Equal("ns", fork.Namespace);
        Assert.Equal(before + (2 * _m.BlockBytes), _store.GetStats().CpuBytes); // only the 4-token tails are copied
        Assert.Equal(ids, _store.ReadTokenIds("dst", 0, 100));

        // The fork grows independently.
        TestData.Append(_store, "dst", _m, TestData.Tokens(20, 500), from: 100);
        Assert.Equal(100, _store.GetContext("src").NumTokens);
        Assert.True(_store.DeleteContext("src"));
        TestData.AssertExact(_store, "dst", _m, 120);
        var e = Assert.Throws<KvDbException>(() => _store.ForkContext("src", "again"));
        Assert.Equal(KvDbErrorCode.NotFound, e.Code);
        e = Assert.Throws<KvDbException>(() => _store.ForkContext("dst", "dst"));
        Assert.Equal(KvDbErrorCode.AlreadyExists, e.Code);
    }

    [Fact]
    public void Uncommitted_appends_are_not_shared()
    {
        int[] ids = TestData.Tokens(64);
        _store.CreateContext("m", "", "open", []);
        using (IAppendTransaction tx = _store.BeginAppend("open"))
        {
            for (int layer = 0; layer < 2; layer++)
            {
                var w = TestData.Workload(_m, 64, layer);
                tx.Append(layer, ids, w.KeyBytes(_m.DType, 0, 64), w.ValueBytes(_m.DType, 0, 64));
            }

            Assert.Equal(0, _store.LookupPrefix("m", "", ids));
            Assert.Equal(0, _store.CreateContext("m", "", "early", ids).NumTokens);
            Assert.Equal(0, _store.ForkContext("open", "fork").NumTokens);
            tx.Commit();
        }

        Assert.Equal(64, _store.LookupPrefix("m", "", ids));
        Assert.Equal(64, _store.CreateContext("m", "", "late", ids).NumTokens);
    }

    [Fact]
    public void List_contexts_pages_in_id_order()
    {
        for (int i = 0; i < 7; i++)
        {
            _store.CreateContext("m", "", $"c{i}", []);
        }

        ContextPage p1 = _store.ListContexts(3, null);
        Assert.Equal(["c0", "c1", "c2"], p1.Contexts.Select(c => c.Id));
        ContextPage p2 = _store.ListContexts(3, p1.NextPageToken);
        Assert.Equal(["c3", "c4", "c5"], p2.Contexts.Select(c => c.Id));
        ContextPage p3 = _store.ListContexts(3, p2.NextPageToken);
        Assert.Equal(["c6"], p3.Contexts.Select(c => c.Id));
        Assert.Equal(string.Empty, p3.NextPageToken);
        Assert.Equal(KvDbErrorCode.InvalidArgument, Assert.Throws<KvDbException>(() => _store.ListContexts(-1, null)).Code);
    }

    [Fact]
    public void Ttl_expires_contexts_in_the_background()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 8 << 20, MaintenanceInterval = TimeSpan.FromMilliseconds(50) });
        store.CreateModel(_m);
        ContextInfo c = store.CreateContext("m", "", "short", [], 1);
        Assert.True(c.ExpiresAtUnixMs > c.CreatedUnixMs);
        store.CreateContext("m", "", "forever", []);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (store.GetStats().ExpiredContexts == 0 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(50);
        }

        Assert.Equal(1, store.GetStats().ExpiredContexts);
        Assert.Throws<KvDbException>(() => store.GetContext("short"));
        Assert.Equal("forever", store.GetContext("forever").Id);
        Assert.Equal(KvDbErrorCode.InvalidArgument, Assert.Throws<KvDbException>(() => store.CreateContext("m", "", "bad", [], -5)).Code);
    }

    public void Dispose() => _store.Dispose();
}

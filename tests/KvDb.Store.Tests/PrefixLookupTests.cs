using KvDb.Store;

namespace KvDb.Store.Tests;

/// <summary>LookupPrefix answers the same whether it walks the hash chain or compares the token ids of the contexts holding the first block.</summary>
public sealed class PrefixLookupTests : IDisposable
{
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 64L << 20 });
    private readonly ModelSchema _m;

    public PrefixLookupTests()
    {
        _m = _store.CreateModel(TestData.Small());
    }

    [Fact]
    public void Longest_committed_prefix_over_several_contexts_sharing_a_first_block()
    {
        int[] common = TestData.Tokens(40);
        int[] a = [.. common, .. TestData.Tokens(30, 500)];
        int[] b = [.. common, .. TestData.Tokens(100, 900)];
        _store.CreateContext("m", "", "a", []);
        TestData.Append(_store, "a", _m, a);
        _store.CreateContext("m", "", "b", []);
        TestData.Append(_store, "b", _m, b);

        Assert.Equal(140, _store.LookupPrefix("m", "", b));
        Assert.Equal(70, _store.LookupPrefix("m", "", a));
        int[] probe = [.. b.AsSpan(0, 90), 7, 7, 7];
        Assert.Equal(90, _store.LookupPrefix("m", "", probe));
        Assert.Equal(10, _store.LookupPrefix("m", "", common.AsSpan(0, 10)));

        // Tokens of an open (uncommitted) append stream are not a cached prefix.
        using (IAppendTransaction tx = _store.BeginAppend("a"))
        {
            int[] more = TestData.Tokens(20, 7000);
            (byte[] k, byte[] v) = (new byte[20 * _m.NumKvHeads * _m.RowBytes], new byte[20 * _m.NumKvHeads * _m.RowBytes]);
            tx.Append(0, more, k, v);
            tx.Append(1, more, k, v);
            Assert.Equal(70, _store.LookupPrefix("m", "", [.. a, .. more]));
        }

        Assert.True(_store.DeleteContext("b"));
        Assert.Equal(40, _store.LookupPrefix("m", "", b));
        Assert.True(_store.DeleteContext("a"));
        Assert.Equal(0, _store.LookupPrefix("m", "", b));
    }

    public void Dispose() => _store.Dispose();
}

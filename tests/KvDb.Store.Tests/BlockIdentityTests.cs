using KvDb.Store;

namespace KvDb.Store.Tests;

/// <summary>What derived data (index files) is keyed by: the sealed identity of each full block, and whether any context still holds it.</summary>
public sealed class BlockIdentityTests : IDisposable
{
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 64L << 20 });
    private readonly ModelSchema _m;

    public BlockIdentityTests()
    {
        _m = _store.CreateModel(TestData.Small());
    }

    [Fact]
    public void Full_blocks_expose_address_and_checksum_the_tail_does_not()
    {
        int[] ids = TestData.Tokens(40);
        _store.CreateContext("m", "docs", "a", []);
        TestData.Append(_store, "a", _m, ids);
        using LayerSnapshot layer = _store.OpenLayer("a", 1);
        UInt128[] chain = BlockHashing.Chain(BlockHashing.Root("m", "docs"), ids, _m.BlockSize);
        for (int i = 0; i < 2; i++)
        {
            Assert.True(layer.TryGetSealed(i, out BlockAddress address, out ulong checksum));
            Assert.Equal(new BlockAddress(chain[i], 1), address);
            Assert.NotEqual(0UL, checksum);
        }

        Assert.False(layer.TryGetSealed(2, out _, out _)); // 8 rows of 16: the open tail
        Assert.Null(_store.DataDirectory);
    }

    [Fact]
    public void A_block_is_held_while_any_context_has_it_shared_or_private()
    {
        int[] ids = TestData.Tokens(32);
        _store.CreateContext("m", "docs", "a", []);
        TestData.Append(_store, "a", _m, ids);
        _store.ForkContext("a", "fork");

        // Same tokens, other bytes: the block's address is published with a's bytes, so b's copy stays private.
        _store.CreateContext("m", "docs", "b", []);
        TestData.Append(_store, "b", _m, ids, seed: 99);
        (BlockAddress shared, ulong sharedSum) = Sealed("a", 1);
        (BlockAddress mine, ulong privateSum) = Sealed("b", 1);
        Assert.Equal(shared, mine);
        Assert.NotEqual(sharedSum, privateSum);
        Assert.True(_store.HoldsBlock(shared, sharedSum));
        Assert.True(_store.HoldsBlock(mine, privateSum));
        Assert.False(_store.HoldsBlock(shared, sharedSum ^ privateSum ^ 1));

        Assert.True(_store.DeleteContext("a"));
        Assert.True(_store.HoldsBlock(shared, sharedSum)); // the fork still has it
        Assert.True(_store.DeleteContext("fork"));
        Assert.False(_store.HoldsBlock(shared, sharedSum));
        Assert.True(_store.DeleteContext("b"));
        Assert.False(_store.HoldsBlock(mine, privateSum));
    }

    public void Dispose() => _store.Dispose();

    private (BlockAddress Address, ulong Checksum) Sealed(string context, int block)
    {
        using LayerSnapshot layer = _store.OpenLayer(context, 0);
        Assert.True(layer.TryGetSealed(block, out BlockAddress address, out ulong checksum));
        return (address, checksum);
    }
}

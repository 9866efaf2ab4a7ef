using KvDb.Store;

namespace KvDb.Store.Tests;

public sealed class HashChainTests
{
    [Fact]
    public void Documented_test_vector_matches()
    {
        // Independently computed with Python's hashlib (see docs/storage.md).
        UInt128 root = BlockHashing.Root("llama", "docs");
        Assert.Equal("fa922b005f17f7165735534c54887cc6", BlockHashing.ToHex(root));
        int[] tokens = new int[32];
        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] = i;
        }

        UInt128[] chain = BlockHashing.Chain(root, tokens, 16);
        Assert.Equal("49b19d2009de9b6a327451d246644254", BlockHashing.ToHex(chain[0]));
        Assert.Equal("97dc4d2386de1a6dc72c80a1291a1ddd", BlockHashing.ToHex(chain[1]));
        Assert.Equal("49b19d2009de9b6a327451d246644254/3", new BlockAddress(chain[0], 3).ToString());
    }

    [Fact]
    public void Same_tokens_and_namespace_give_the_same_addresses_in_two_store_instances()
    {
        ModelSchema m = TestData.Small();
        int[] ids = TestData.Tokens(64);
        var addresses = new List<string>[2];
        for (int s = 0; s < 2; s++)
        {
            using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 16 << 20 });
            store.CreateModel(m);
            store.CreateContext("m", "tenant-a", "c", []);
            TestData.Append(store, "c", m, ids);
            addresses[s] = [];
            foreach (KvBlock b in store.BlocksOf("c", 1))
            {
                addresses[s].Add(b.Address!.Value.ToString());
            }
        }

        Assert.Equal(4, addresses[0].Count);
        Assert.Equal(addresses[0], addresses[1]);
        Assert.All(addresses[0], a => Assert.EndsWith("/1", a, StringComparison.Ordinal));
    }

    [Fact]
    public void Different_namespace_or_model_gives_different_addresses()
    {
        int[] ids = TestData.Tokens(16);
        UInt128 a = BlockHashing.Chain(BlockHashing.Root("m", ""), ids, 16)[0];
        UInt128 b = BlockHashing.Chain(BlockHashing.Root("m", "other"), ids, 16)[0];
        UInt128 c = BlockHashing.Chain(BlockHashing.Root("m2", ""), ids, 16)[0];
        Assert.NotEqual(a, b);
        Assert.NotEqual(a, c);
        Assert.NotEqual(b, c);

        // The encoding is length-prefixed, so moving a character between model and namespace changes the root.
        Assert.NotEqual(BlockHashing.Root("ab", "c"), BlockHashing.Root("a", "bc"));
    }
}

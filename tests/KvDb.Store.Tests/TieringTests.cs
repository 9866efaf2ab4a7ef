using System.Runtime.InteropServices;
using KvDb.Kernels;
using KvDb.Store;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Store.Tests;

public sealed class TieringTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ModelSchema _m = ModelSchema.Normalize(TestData.Small());

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Demotion_takes_the_cold_blocks_of_owners_above_their_share_first(bool shares)
    {
        const int tokens = 2000; // 125 full blocks per layer
        long contextBytes = _m.NumLayers * 125 * _m.BlockBytes;
        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = 2 * contextBytes, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        if (shares)
        {
            // Tenant b is guaranteed its whole context; tenant a nothing.
            store.Blocks.ResidentShare = owner => owner == "b" ? contextBytes : 0;
        }

        store.CreateModel(_m);
        store.CreateContext("m", "b:ns", "b:hot", []);
        TestData.Append(store, "b:hot", _m, TestData.Tokens(tokens, 7), seed: 1, chunk: 500);
        Assert.Equal(contextBytes, store.Blocks.ResidentBytes("b"));

        // Tenant a then writes three times the tier's headroom: LRU alone would push b's older blocks out first.
        for (int c = 0; c < 3; c++)
        {
            store.CreateContext("m", "a:ns", "a:c" + c, []);
            TestData.Append(store, "a:c" + c, _m, TestData.Tokens(tokens, 1000 + c), seed: (ulong)(c + 2), chunk: 500);
            Assert.True(store.GetStats().CpuBytes <= 2 * contextBytes);
        }

        Assert.True(store.Blocks.Demotions > 0);
        long bResident = store.Blocks.ResidentBytes("b");
        long aResident = store.Blocks.ResidentBytes("a");
        Assert.Equal(store.GetStats().CpuBytes, aResident + bResident);
        if (shares)
        {
            Assert.Equal(contextBytes, bResident);
        }
        else
        {
            Assert.True(bResident < contextBytes / 2, $"plain LRU demotes the oldest (b's) blocks first; b kept {bResident} of {contextBytes}");
        }

        // Whatever was demoted reads back exactly.
        TestData.AssertExact(store, "b:hot", _m, tokens, seed: 1);
        TestData.AssertExact(store, "a:c0", _m, tokens, seed: 2);
    }

    [Fact]
    public void An_owner_over_its_share_demotes_its_own_blocks_without_memory_pressure()
    {
        const int tokens = 2000; // 125 full blocks per layer
        long contextBytes = _m.NumLayers * 125 * _m.BlockBytes;
        long cap = contextBytes / 4;
        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = 10 * contextBytes, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        store.Blocks.ResidentShare = owner => owner == "a" ? cap : 0;
        store.CreateModel(_m);
        store.CreateContext("m", "a:ns", "a:capped", []);
        store.CreateContext("m", "b:ns", "b:free", []);
        TestData.Append(store, "a:capped", _m, TestData.Tokens(tokens, 3), seed: 1, chunk: 500);
        TestData.Append(store, "b:free", _m, TestData.Tokens(tokens, 4), seed: 2, chunk: 500);

        // Far below the tier's watermark, yet a holds at most its share (plus its partial tail blocks, which cannot move).
        Assert.True(store.GetStats().CpuBytes < store.GetStats().CpuBudgetBytes / 2);
        long partialTails = _m.NumLayers * _m.BlockBytes;
        Assert.InRange(store.Blocks.ResidentBytes("a"), cap / 2, cap + partialTails);
        Assert.Equal(store.Blocks.ResidentBytes("b"), store.GetStats().CpuBytes - store.Blocks.ResidentBytes("a"));
        Assert.True(store.Blocks.ResidentBytes("b") >= contextBytes);
        TestData.AssertExact(store, "a:capped", _m, tokens, seed: 1);
        TestData.AssertExact(store, "b:free", _m, tokens, seed: 2);
    }

    [Fact]
    public void Attention_stays_exact_while_blocks_move_between_cpu_and_disk()
    {
        const int contexts = 4;
        const int tokens = 2000;
        long blockBytes = _m.BlockBytes;
        long total = contexts * _m.NumLayers * 125 * blockBytes; // 4 MB of K/V
        long budget = total * 3 / 10;                           // the CPU tier holds under a third of it
        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = budget, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        store.CreateModel(_m);
        for (int c = 0; c < contexts; c++)
        {
            store.CreateContext("m", "", "c" + c, []);
            TestData.Append(store, "c" + c, _m, TestData.Tokens(tokens, c * 100_003), seed: (ulong)(c + 1), chunk: 300);
            Assert.True(store.GetStats().CpuBytes <= budget);
        }

        Assert.True(store.Blocks.Demotions > 0);
        for (int round = 0; round < 2; round++)
        {
            for (int c = 0; c < contexts; c++)
            {
                for (int layer = 0; layer < _m.NumLayers; layer++)
                {
                    SyntheticWorkload w = TestData.Workload(_m, tokens, layer, (ulong)(c + 1));
                    float[] q = w.Queries(1, (ulong)(round + 10));
                    var output = new float[q.Length];
                    var lse = new float[_m.NumQueryHeads];
                    using (LayerSnapshot s = store.OpenLayer("c" + c, layer))
                    {
                        Assert.Equal(tokens, s.Tokens);
                        ExactAttentionKernel.Run(_m.Geometry, s.Blocks, q, 1, 0, 0, output, lse);
                    }

                    ReadOnlySpan<float> keys = MemoryMarshal.Cast<byte, float>(w.KeyBytes(KvDType.F32, 0, tokens));
                    ReadOnlySpan<float> values = MemoryMarshal.Cast<byte, float>(w.ValueBytes(KvDType.F32, 0, tokens));
                    (double[] refOut, double[] refLse) = ReferenceAttention.Compute(keys, values, q, 1, _m.NumQueryHeads, _m.NumKvHeads, _m.HeadDim, _m.SoftmaxScale);
                    Assert.True(ReferenceAttention.RelativeL2(output, refOut) <= 1e-5);
                    Assert.True(ReferenceAttention.MaxAbsError(lse, refLse) <= 1e-4);
                    Assert.True(store.GetStats().CpuBytes <= budget);
                }
            }
        }

        // Reading the same layer again right away finds it resident (a cyclic scan larger than the cache never does, under LRU).
        using (store.OpenLayer("c1", 1))
        {
        }

        long hitsBefore = store.GetStats().Tiers[0].Hits;
        using (store.OpenLayer("c1", 1))
        {
        }

        StoreStats stats = store.GetStats();
        Assert.Equal(hitsBefore + 125, stats.Tiers[0].Hits);
        TierStats cpu = stats.Tiers[0];
        TierStats disk = stats.Tiers[1];
        Assert.Equal("cpu", cpu.Name);
        Assert.Equal("disk", disk.Name);
        Assert.True(cpu.Misses > 0, "some reads had to promote blocks from disk");
        Assert.True(disk.Hits > 0 && disk.Blocks > 0 && disk.Bytes > 0);
        Assert.Equal(0, disk.Misses);
        Assert.True(cpu.Bytes <= budget);

        // Explicit eviction empties the CPU tier of full blocks; only the partial tails (2000 = 125 × 16, none) remain.
        (long demoted, _) = store.Evict(0);
        Assert.True(demoted > 0);
        Assert.Equal(0, store.GetStats().CpuBytes);
        TestData.AssertExact(store, "c2", _m, tokens, seed: 3);
    }

    [Fact]
    public void Memory_only_store_refuses_eviction_and_checkpoints_with_a_clear_error()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 1 << 20 });
        Assert.Equal(KvDbErrorCode.FailedPrecondition, Assert.Throws<KvDbException>(() => store.Evict(0)).Code);
        Assert.Equal(KvDbErrorCode.FailedPrecondition, Assert.Throws<KvDbException>(() => store.Checkpoint()).Code);
        Assert.Single(store.GetStats().Tiers);
    }

    public void Dispose() => _dir.Dispose();
}

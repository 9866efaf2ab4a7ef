using KvDb.Kernels;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.Store.Tests;

public sealed class InMemoryKvStoreTests : IDisposable
{
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 8L << 20 });
    private readonly ModelSchema _model;
    private readonly SyntheticWorkload _w = new(new SyntheticWorkloadOptions { Tokens = 100, NumKvHeads = 2, NumQueryHeads = 2, HeadDim = 8, KeyRank = 4, RecentWindow = 4 });

    public InMemoryKvStoreTests()
    {
        _model = _store.CreateModel(new ModelSchema("m", 2, 2, 2, 8, KvDType.F32, 16, 0));
    }

    [Fact]
    public void Appended_rows_read_back_bit_exact_in_wire_layout()
    {
        string id = Load(37);
        using LayerSnapshot s = _store.OpenLayer(id, 1);
        Assert.Equal(37, s.Tokens);
        Assert.Equal(3, s.Blocks.Length);
        Assert.Equal([16, 16, 5], [s.Blocks[0].Tokens, s.Blocks[1].Tokens, s.Blocks[2].Tokens]);
        Assert.Equal([0L, 16L, 32L], [s.Blocks[0].Start, s.Blocks[1].Start, s.Blocks[2].Start]);
        Assert.Equal(_store.GetContext(id).Bytes, 2 * 3 * _model.BlockBytes);
    }

    [Fact]
    public void Aborted_transaction_rolls_back_and_pinned_readers_keep_their_rows()
    {
        string id = Load(20);
        LayerSnapshot pinned;
        using (IAppendTransaction tx = _store.BeginAppend(id))
        {
            var ids = new int[10];
            _w.FillTokenIds(20, ids);
            tx.Append(0, ids, _w.KeyBytes(KvDType.F32, 20, 10), _w.ValueBytes(KvDType.F32, 20, 10));
            pinned = _store.OpenLayer(id, 0);
            Assert.Equal(30, pinned.Tokens);
        }

        Assert.Equal([20L, 20L], _store.GetContext(id).LayerTokens);
        using (pinned)
        {
            // Overwrite the rolled-back positions with different data; the pinned view must not change.
            float before = ReadKey(pinned, 25);
            using (IAppendTransaction tx = _store.BeginAppend(id))
            {
                var ids = new int[10];
                _w.FillTokenIds(20, ids);
                tx.Append(0, ids, _w.ValueBytes(KvDType.F32, 20, 10), _w.ValueBytes(KvDType.F32, 20, 10));
                tx.Commit();
            }

            Assert.Equal(before, ReadKey(pinned, 25));
        }
    }

    [Fact]
    public void Budget_exhaustion_is_resource_exhausted_and_leaves_the_context_unchanged()
    {
        using var tiny = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 4 * 2048 });
        ModelSchema m = tiny.CreateModel(_model);
        Assert.Equal(2048, m.BlockBytes);
        string id = tiny.CreateContext("m", "", "c", []).Id;
        var ids = new int[100];
        _w.FillTokenIds(0, ids);
        using (IAppendTransaction tx = tiny.BeginAppend(id))
        {
            var e = Assert.Throws<KvDbException>(() => tx.Append(0, ids, _w.KeyBytes(KvDType.F32, 0, 100), _w.ValueBytes(KvDType.F32, 0, 100)));
            Assert.Equal(KvDbErrorCode.ResourceExhausted, e.Code);
            Assert.Contains("--cpu-budget", e.Message, StringComparison.Ordinal);
        }

        Assert.Equal(0, tiny.GetContext(id).NumTokens);
        Assert.Equal(0, tiny.GetStats().CpuBytes);
    }

    [Fact]
    public void Deleting_frees_blocks_and_prefix_sharing_keeps_shared_blocks_alive()
    {
        string a = Load(40);
        var ids = new int[40];
        _w.FillTokenIds(0, ids);
        long single = _store.GetStats().CpuBytes;
        string b = _store.CreateContext("m", "", null, ids).Id;
        Assert.Equal(40, _store.GetContext(b).NumTokens);

        // Two full blocks per layer are shared; only the partial third block is copied.
        Assert.Equal(single + 2 * _model.BlockBytes, _store.GetStats().CpuBytes);
        Assert.True(_store.DeleteContext(a));
        Assert.False(_store.DeleteContext(a));
        Assert.Equal(2 * 3 * _model.BlockBytes, _store.GetStats().CpuBytes);
        Assert.True(_store.DeleteContext(b));
        Assert.Equal(0, _store.GetStats().CpuBytes);
    }

    private string Load(int tokens)
    {
        string id = _store.CreateContext("m", "", null, []).Id;
        var ids = new int[tokens];
        _w.FillTokenIds(0, ids);
        using IAppendTransaction tx = _store.BeginAppend(id);
        for (int layer = 0; layer < 2; layer++)
        {
            tx.Append(layer, ids, _w.KeyBytes(KvDType.F32, 0, tokens), _w.ValueBytes(KvDType.F32, 0, tokens));
        }

        tx.Commit();
        return id;
    }

    private static unsafe float ReadKey(LayerSnapshot s, int position)
    {
        KvBlockRef b = s.Blocks[position / 16];
        return ((float*)b.Keys)[(position % 16) * 8];
    }

    public void Dispose() => _store.Dispose();
}

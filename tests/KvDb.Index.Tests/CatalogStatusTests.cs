using KvDb.Index.Catalog;
using KvDb.Kernels;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.Index.Tests;

/// <summary>The catalog's status is a value, and reading it changes nothing: only RequestUpdate starts work.</summary>
public sealed class CatalogStatusTests : IDisposable
{
    private const int Tokens = 2048;
    private readonly InMemoryKvStore _store = new(new StoreOptions { CpuBudgetBytes = 64L << 20 });
    private readonly string _context;

    public CatalogStatusTests()
    {
        var workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = Tokens, NumKvHeads = 2, NumQueryHeads = 4, HeadDim = 32 });
        _store.CreateModel(new ModelSchema("m", 1, 4, 2, 32, KvDType.F32, 64, 0));
        _context = _store.CreateContext("m", "", null, ReadOnlySpan<int>.Empty).Id;
        var ids = new int[Tokens];
        workload.FillTokenIds(0, ids);
        using IAppendTransaction tx = _store.BeginAppend(_context);
        tx.Append(0, ids, workload.KeyBytes(KvDType.F32, 0, Tokens), workload.ValueBytes(KvDType.F32, 0, Tokens));
        tx.Commit();
    }

    [Fact]
    public async Task Probe_has_no_side_effects_and_update_requests_take_the_index_to_ready()
    {
        using var catalog = new LayerIndexCatalog(_store, directory: null, segmentTokens: 1024);
        using LayerSnapshot layer = _store.OpenLayer(_context, 0);
        for (int i = 0; i < 3; i++)
        {
            IndexStatus absent = catalog.Probe(_context, layer, "block", out LayerIndexes? none);
            Assert.Null(none);
            Assert.Equal(new IndexStatus(IndexState.Absent, "block", 0, Tokens), absent);
        }

        await catalog.WhenBackgroundWorkDone();
        Assert.Equal(0, catalog.Counters.Builds);

        catalog.RequestUpdate(_context, layer, "block");
        IndexStatus building = catalog.Probe(_context, layer, "block", out _);
        Assert.True(building.State is IndexState.Building or IndexState.Ready, $"{building.State}");
        await catalog.WhenIdle(_context, 0, "block").WaitAsync(TimeSpan.FromSeconds(60));

        IndexStatus ready = catalog.Probe(_context, layer, "block", out LayerIndexes? view);
        Assert.NotNull(view);
        Assert.Equal(IndexState.Ready, ready.State);
        Assert.True(ready.IsReady);
        Assert.Equal(Tokens, ready.IndexedTokens);
        Assert.Equal(Tokens, ready.BaseTokens);
        Assert.Equal(SegmentOrigin.Built, ready.BaseOrigin);
        Assert.Equal(0, ready.SuffixTokens);
        Assert.Null(ready.Problem);
        long builds = catalog.Counters.Builds;

        // Probing again, many times, starts nothing.
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(ready, catalog.Probe(_context, layer, "block", out _));
        }

        await catalog.WhenBackgroundWorkDone();
        Assert.Equal(builds, catalog.Counters.Builds);

        // Another spec of the same layer is its own entry.
        Assert.Equal(IndexState.Absent, catalog.Probe(_context, layer, "lsh", out _).State);
    }

    [Fact]
    public void Sample_queries_are_kept_per_layer_up_to_the_cap_evenly_spaced()
    {
        var log = new SampleQueryLog(maxLayers: 2);
        var rows = new float[1000 * 4];
        for (int i = 0; i < 1000; i++)
        {
            rows[i * 4] = i;
        }

        log.Add("a", 0, rows, 4);
        Assert.Equal(SampleQueryLog.MaxPerLayer, log.Count("a", 0));
        float[] kept = log.Snapshot("a", 0);
        Assert.Equal(0f, kept[0]);
        Assert.Equal((float)(1L * 1000 / SampleQueryLog.MaxPerLayer), kept[4]);
        log.Add("a", 1, rows.AsSpan(0, 8), 4);
        log.Add("b", 0, rows.AsSpan(0, 4), 4);
        int layers = (log.Count("a", 0) > 0 ? 1 : 0) + (log.Count("a", 1) > 0 ? 1 : 0) + (log.Count("b", 0) > 0 ? 1 : 0);
        Assert.Equal(2, layers);
        log.Forget("b", 0);
        Assert.Equal(0, log.Count("b", 0));
        Assert.Empty(log.Snapshot("b", 0));
    }

    public void Dispose() => _store.Dispose();
}

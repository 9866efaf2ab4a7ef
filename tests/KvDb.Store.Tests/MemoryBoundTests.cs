using System.Diagnostics;
using KvDb.Kernels;
using KvDb.Store;
using KvDb.TestKit;

namespace KvDb.Store.Tests;

/// <summary>Process-wide RSS can only be attributed to one test when nothing else runs beside it.</summary>
[CollectionDefinition("rss", DisableParallelization = true)]
public sealed class RssCollection
{
}

/// <summary>The process's resident memory follows the CPU budget, not the amount of data stored.</summary>
[Collection("rss")]
public sealed class MemoryBoundTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly Xunit.Abstractions.ITestOutputHelper _output;

    public MemoryBoundTests(Xunit.Abstractions.ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public void Rss_stays_bounded_while_ten_times_the_budget_is_stored_and_read()
    {
        const long budget = 16L << 20;
        const int tokens = 2048;
        const int warmup = 2;
        const int contexts = 12;
        var m = ModelSchema.Normalize(new ModelSchema("wide", 1, 8, 8, 128, KvDType.F32, 64, 0)); // 8 KiB per token
        byte[] keys = new byte[tokens * m.TokenBytesPerLayer / 2];
        byte[] values = new byte[keys.Length];
        new Random(5).NextBytes(keys);
        new Random(6).NextBytes(values);
        for (int i = 3; i < keys.Length; i += 4)
        {
            keys[i] &= 0x3F; // keep every f32 finite
            values[i] &= 0x3F;
        }

        using var store = new KvStore(new StoreOptions { CpuBudgetBytes = budget, DataDirectory = _dir.Path, MaintenanceInterval = TimeSpan.Zero });
        store.CreateModel(m);
        // The first contexts pay the fixed costs (log buffers, arena slabs, JIT); growth after them must not follow the data.
        long before = 0;
        for (int c = 0; c < contexts; c++)
        {
            store.CreateContext("wide", "", "c" + c, []);
            using IAppendTransaction tx = store.BeginAppend("c" + c);
            tx.Append(0, TestData.Tokens(tokens, c * 100_003), keys, values);
            tx.Commit();
            if (c == warmup - 1)
            {
                before = Rss();
            }
        }

        for (int c = 0; c < contexts; c++)
        {
            using LayerSnapshot s = store.OpenLayer("c" + c, 0);
            Assert.Equal(tokens, s.Tokens);
        }

        long stored = (contexts - warmup) * tokens * m.TokenBytesPerLayer; // 160 MiB after the warm-up
        long growth = Rss() - before;
        _output.WriteLine($"RSS grew {growth >> 20} MiB while {stored >> 20} MiB went through a {budget >> 20} MiB CPU budget");
        Assert.True(store.GetStats().CpuBytes <= budget);
        Assert.True(growth < 2 * budget, $"RSS grew {growth >> 20} MiB while storing {stored >> 20} MiB through a {budget >> 20} MiB CPU budget");
    }

    private static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using Process p = Process.GetCurrentProcess();
        p.Refresh();
        return p.WorkingSet64;
    }

    public void Dispose() => _dir.Dispose();
}

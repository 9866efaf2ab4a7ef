using KvDb.Kernels;
using KvDb.Store;
using KvDb.TestKit;

namespace KvDb.Store.Tests;

/// <summary>
/// Space reclamation: a checkpoint leaves the data directory near the live K/V bytes, compaction gives the space of
/// deleted contexts back, and everything still stored reads back bit-exact, also after a restart and while readers run.
/// </summary>
public sealed class CompactionTests : IDisposable
{
    // 8 MiB segments (the smallest the logs allow) so a few tens of MiB of K/V show the files coming and going.
    private const int SegmentBits = 23;
    private const long Segment = 1L << SegmentBits;
    private const int Tokens = 1024;
    private readonly TempDirectory _dir = new();

    // 2 layers of 8 KV heads, d = 64, f32: 4 KiB per token and layer, 8 MiB per context of 1,024 tokens.
    private readonly ModelSchema _m = new("m", 2, 8, 8, 64, KvDType.F32, 16, 0);

    private long ContextBytes => (long)Tokens * _m.NumLayers * _m.TokenBytesPerLayer;

    [Fact]
    public void A_checkpoint_leaves_at_most_1_3x_the_live_bytes_and_compaction_gives_deleted_space_back()
    {
        using (KvStore store = Open())
        {
            store.CreateModel(_m);
            for (int c = 0; c < 8; c++)
            {
                Fill(store, c);
            }

            store.Checkpoint();
            long live = 8 * ContextBytes;
            long afterCheckpoint = DirectoryBytes(atMost: (long)(1.3 * live));
            Assert.True(afterCheckpoint <= 1.3 * live, $"data directory {afterCheckpoint} bytes after a checkpoint, live K/V {live}");
            DiskSpace space = store.GetStats().Disk!;
            Assert.Equal(0, space.BlockLogDeadBytes);
            Assert.True(space.BlockLogLiveBytes >= live);

            for (int c = 0; c < 6; c++)
            {
                store.DeleteContext("c" + c);
            }

            space = store.GetStats().Disk!;
            Assert.True(space.DeadRatio >= 0.74, $"dead ratio {space.DeadRatio} after deleting 6 of 8 contexts");

            CompactionResult r = store.Compact();
            Assert.Equal(2 * Tokens / _m.BlockSize * _m.NumLayers, r.BlocksMoved);
            Assert.Equal(0, r.CorruptBlocks);
            Assert.True(r.DiskBytesAfter < r.DiskBytesBefore / 2, $"block log files {r.DiskBytesBefore} → {r.DiskBytesAfter}");

            // What is left: the two contexts' blocks, at most one segment of the old range (the one holding the cut) and
            // one of the write-ahead log.
            long remaining = 2 * ContextBytes;
            long after = DirectoryBytes(atMost: (long)(1.3 * remaining) + (2 * Segment));
            Assert.True(after <= (1.3 * remaining) + (2 * Segment), $"data directory {after} bytes after compaction, live K/V {remaining}");
            Assert.True(after < afterCheckpoint / 2);
            space = store.GetStats().Disk!;
            Assert.Equal(1, space.Compactions);
            Assert.True(space.BlockLogDeadBytes <= Segment, $"dead bytes {space.BlockLogDeadBytes} left after compaction");
            AssertKept(store);
        }

        using (KvStore store = Open())
        {
            Assert.Empty(store.RecoveryProblems);
            AssertKept(store);
            Assert.Equal(0, store.GetStats().CorruptRecords);
        }
    }

    [Fact]
    public async Task Blocks_only_on_disk_are_read_back_and_moved_and_readers_during_compaction_see_exact_bytes()
    {
        // A CPU budget of 12 MiB for 64 MiB of K/V: most blocks live only in the block log when compaction runs.
        using KvStore store = Open(budget: 12L << 20);
        store.CreateModel(_m);
        for (int c = 0; c < 8; c++)
        {
            Fill(store, c);
        }

        store.Checkpoint();
        for (int c = 0; c < 6; c++)
        {
            store.DeleteContext("c" + c);
        }

        using var stop = new CancellationTokenSource();
        int reads = 0;
        Task reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                TestData.AssertExact(store, "c7", _m, Tokens, seed: 14);
                Interlocked.Increment(ref reads);
            }
        });

        store.Evict(0);
        CompactionResult r = store.Compact();
        stop.Cancel();
        await reader;
        Assert.True(reads > 0);
        Assert.Equal(0, r.CorruptBlocks);
        Assert.True(r.BlocksMoved >= Tokens / _m.BlockSize * _m.NumLayers);
        AssertKept(store);
        Assert.Equal(0, store.GetStats().CorruptRecords);
    }

    [Fact]
    public void The_automatic_policy_compacts_once_the_dead_ratio_passes_its_threshold()
    {
        using (KvStore store = Open(deadRatio: 0.6, maintenance: TimeSpan.FromMilliseconds(50)))
        {
            store.CreateModel(_m);
            for (int c = 0; c < 4; c++)
            {
                Fill(store, c);
            }

            store.Checkpoint();
            store.DeleteContext("c0");
            Thread.Sleep(300);
            Assert.Equal(0, store.GetStats().Disk!.Compactions); // a quarter dead: under the threshold (half is, too)

            store.DeleteContext("c1");
            store.DeleteContext("c2");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (store.GetStats().Disk!.Compactions == 0 && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }

            Assert.Equal(1, store.GetStats().Disk!.Compactions);
            Assert.True(store.GetStats().Disk!.DeadRatio < 0.1);
            TestData.AssertExact(store, "c3", _m, Tokens, seed: 10);
        }

        using (KvStore store = Open())
        {
            TestData.AssertExact(store, "c3", _m, Tokens, seed: 10);
        }
    }

    [Fact]
    public void A_log_made_before_segment_sizes_were_recorded_opens_with_its_1_GiB_segments()
    {
        using (KvStore store = Open(segmentBits: 30))
        {
            store.CreateModel(_m);
            Fill(store, 0);
            store.Checkpoint();
            Fill(store, 1);
        }

        foreach (string marker in Directory.GetFiles(_dir.Path, "segment-bits", SearchOption.AllDirectories))
        {
            File.Delete(marker);
        }

        using (KvStore store = Open())
        {
            Assert.Empty(store.RecoveryProblems);
            TestData.AssertExact(store, "c0", _m, Tokens, seed: 7);
            TestData.AssertExact(store, "c1", _m, Tokens, seed: 8);
        }
    }

    [Fact]
    public void A_memory_only_store_has_nothing_to_compact()
    {
        using var store = new InMemoryKvStore(new StoreOptions { CpuBudgetBytes = 1 << 20 });
        KvDbException e = Assert.Throws<KvDbException>(() => store.Compact());
        Assert.Equal(KvDbErrorCode.FailedPrecondition, e.Code);
        Assert.Null(store.GetStats().Disk);
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>Context "cN": its own token ids (no block shared with another context) and K/V seed 7 + N.</summary>
    private void Fill(KvStore store, int c)
    {
        store.CreateContext("m", "", "c" + c, []);
        TestData.Append(store, "c" + c, _m, TestData.Tokens(Tokens, offset: c * 100_000), chunk: 256, seed: (ulong)(7 + c));
    }

    private void AssertKept(KvStore store)
    {
        TestData.AssertExact(store, "c6", _m, Tokens, seed: 13);
        TestData.AssertExact(store, "c7", _m, Tokens, seed: 14);
        Assert.Throws<KvDbException>(() => store.GetContext("c0"));
    }

    /// <summary>Bytes of every file in the data directory, once at most <paramref name="atMost"/> or after 5 s (FASTER deletes truncated segment files on a background callback).</summary>
    private long DirectoryBytes(long atMost)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            long bytes = 0;
            foreach (string f in Directory.GetFiles(_dir.Path, "*", SearchOption.AllDirectories))
            {
                try
                {
                    bytes += new FileInfo(f).Length;
                }
                catch (FileNotFoundException)
                {
                }
            }

            if (bytes <= atMost || DateTime.UtcNow >= deadline)
            {
                return bytes;
            }

            Thread.Sleep(20);
        }
    }

    private KvStore Open(long budget = 256L << 20, double deadRatio = 0, TimeSpan? maintenance = null, int segmentBits = SegmentBits) => new(new StoreOptions
    {
        CpuBudgetBytes = budget,
        DataDirectory = _dir.Path,
        MaintenanceInterval = maintenance ?? TimeSpan.Zero,
        LogSegmentSizeBits = segmentBits,
        CompactionDeadRatio = deadRatio,
        CompactionMinDeadBytes = 1 << 20,
    });
}

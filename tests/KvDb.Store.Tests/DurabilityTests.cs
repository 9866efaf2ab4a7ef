using KvDb.Store;
using KvDb.TestKit;

namespace KvDb.Store.Tests;

public sealed class DurabilityTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly ModelSchema _m = TestData.Small();

    [Fact]
    public void Committed_state_is_replayed_from_the_log_and_open_streams_are_rolled_back()
    {
        int[] ids = TestData.Tokens(300);
        using (KvStore store = Open())
        {
            store.CreateModel(_m);
            store.CreateContext("m", "ns", "a", []);
            TestData.Append(store, "a", _m, ids[..200], chunk: 70);
            store.CreateContext("m", "ns", "b", ids.AsSpan(0, 150));
            store.ForkContext("a", "f");
            store.CreateContext("m", "ns", "gone", []);
            TestData.Append(store, "gone", _m, ids[..40]);
            store.DeleteContext("gone");
            TestData.Append(store, "a", _m, ids[200..], from: 200);

            // A stream that never commits must not come back.
            IAppendTransaction open = store.BeginAppend("b");
            var w = TestData.Workload(_m, 150, 0);
            open.Append(0, TestData.Tokens(10, 77), w.KeyBytes(_m.DType, 150, 10), w.ValueBytes(_m.DType, 150, 10));
        }

        using (KvStore store = Open())
        {
            Assert.Empty(store.RecoveryProblems);
            Assert.Equal(300, store.GetContext("a").NumTokens);
            Assert.Equal(150, store.GetContext("b").NumTokens);
            Assert.Equal(200, store.GetContext("f").NumTokens);
            Assert.Throws<KvDbException>(() => store.GetContext("gone"));
            TestData.AssertExact(store, "a", _m, 300);
            TestData.AssertExact(store, "b", _m, 150);
            TestData.AssertExact(store, "f", _m, 200);
            Assert.Equal(ids, store.ReadTokenIds("a", 0, 300));
            Assert.Equal(300, store.LookupPrefix("m", "ns", ids));

            // The recovered store keeps working and logging.
            TestData.Append(store, "b", _m, ids[150..], from: 150);
        }

        using (KvStore store = Open())
        {
            TestData.AssertExact(store, "b", _m, 300);
        }
    }

    [Fact]
    public void Checkpoint_then_more_log_recovers_everything_and_shares_blocks()
    {
        int[] ids = TestData.Tokens(500);
        using (KvStore store = Open())
        {
            store.CreateModel(_m);
            store.CreateContext("m", "", "a", []);
            TestData.Append(store, "a", _m, ids[..320]);
            store.CreateContext("m", "", "b", ids.AsSpan(0, 320));

            // A stream open across the checkpoint: its early chunks are before the cut, its commit after.
            using (IAppendTransaction tx = store.BeginAppend("a"))
            {
                for (int layer = 0; layer < 2; layer++)
                {
                    var w = TestData.Workload(_m, 500, layer);
                    tx.Append(layer, ids.AsSpan(320, 50), w.KeyBytes(_m.DType, 320, 50), w.ValueBytes(_m.DType, 320, 50));
                }

                CheckpointResult cp = store.Checkpoint();
                Assert.Equal(2, cp.Contexts);
                for (int layer = 0; layer < 2; layer++)
                {
                    var w = TestData.Workload(_m, 500, layer);
                    tx.Append(layer, ids.AsSpan(370, 130), w.KeyBytes(_m.DType, 370, 130), w.ValueBytes(_m.DType, 370, 130));
                }

                tx.Commit();
            }

            store.Checkpoint();
            store.CreateContext("m", "", "c", []);
            TestData.Append(store, "c", _m, ids[..100]);
        }

        using (KvStore store = Open())
        {
            Assert.Empty(store.RecoveryProblems);
            TestData.AssertExact(store, "a", _m, 500);
            TestData.AssertExact(store, "b", _m, 320);
            TestData.AssertExact(store, "c", _m, 100);

            // Shared blocks come back once: 31 full blocks per layer for a, 0 new for b, c's 6 dedupe against a's.
            Assert.Equal(2 * 31, store.GetStats().SharedBlocks);
            Assert.Equal(500, store.LookupPrefix("m", "", ids));
        }
    }

    [Fact]
    public void Corrupt_log_record_is_detected_counted_and_never_served()
    {
        int[] ids = TestData.Tokens(64);
        using (KvStore store = Open())
        {
            store.CreateModel(_m);
            store.CreateContext("m", "", "a", []);
            TestData.Append(store, "a", _m, ids);
            store.CreateContext("m", "", "b", []);
            TestData.Append(store, "b", _m, ids, seed: 3);
        }

        // Flip bytes in the middle of b's chunk payload (its keys), past the log's own framing.
        string wal = Directory.GetFiles(Path.Combine(_dir.Path, "wal"), "wal.log*")[0];
        byte[] bytes = File.ReadAllBytes(wal);
        int at = IndexOf(bytes, "b"u8.ToArray(), bytes.Length / 2);
        for (int i = 200; i < 216; i++)
        {
            bytes[at + i] ^= 0x5A;
        }

        File.WriteAllBytes(wal, bytes);
        using (KvStore store = Open())
        {
            Assert.NotEmpty(store.RecoveryProblems);
            Assert.True(store.GetStats().CorruptRecords >= 1);
            TestData.AssertExact(store, "a", _m, 64);

            // b's append lost a chunk: the whole append is dropped, never served partially.
            Assert.Equal(0, store.GetContext("b").NumTokens);
        }
    }

    [Fact]
    public void Corrupt_checkpoint_falls_back_to_the_previous_one_and_corrupt_blocks_are_reported_on_read()
    {
        int[] ids = TestData.Tokens(64);
        using (KvStore store = Open())
        {
            store.CreateModel(_m);
            store.CreateContext("m", "", "a", []);
            TestData.Append(store, "a", _m, ids);
            store.Checkpoint();
            store.Checkpoint();
        }

        string latest = Path.Combine(_dir.Path, "checkpoint.kvc");
        byte[] cp = File.ReadAllBytes(latest);
        cp[cp.Length / 2] ^= 0xFF;
        File.WriteAllBytes(latest, cp);
        using (KvStore store = Open())
        {
            Assert.Equal(1, store.GetStats().CorruptRecords);
            TestData.AssertExact(store, "a", _m, 64);
        }

        // Now damage a block in the disk tier: the read fails with DATA_LOSS instead of serving wrong bytes.
        string blocks = Directory.GetFiles(Path.Combine(_dir.Path, "blocks"), "blocks.log*")[0];
        byte[] b = File.ReadAllBytes(blocks);
        for (int i = 1000; i < b.Length; i += 4096)
        {
            b[i] ^= 0x11;
        }

        File.WriteAllBytes(blocks, b);
        File.Delete(latest);
        using (KvStore store = Open())
        {
            var e = Assert.Throws<KvDbException>(() => store.OpenLayer("a", 0));
            Assert.Equal(KvDbErrorCode.DataLoss, e.Code);
            Assert.True(store.GetStats().CorruptRecords >= 1);
        }
    }

    [Fact]
    public void Unreadable_log_metadata_is_moved_aside_and_the_store_still_opens()
    {
        using (KvStore store = Open())
        {
            store.CreateModel(_m);
            store.CreateContext("m", "", "a", []);
        }

        // FASTER removes outdated commit files in the background, possibly just after the store is disposed, so
        // a listed file may be gone by the time it is read: skip those (what is left is what recovery will read).
        int corrupted = 0;
        foreach (string f in Directory.GetFiles(Path.Combine(_dir.Path, "wal"), "*", SearchOption.AllDirectories))
        {
            if (!f.Contains("commit", StringComparison.Ordinal))
            {
                continue;
            }

            try
            {
                byte[] bytes = File.ReadAllBytes(f);
                Array.Fill(bytes, (byte)0xEE);
                File.WriteAllBytes(f, bytes);
                corrupted++;
            }
            catch (FileNotFoundException)
            {
            }
        }

        Assert.True(corrupted >= 1, "no commit file was left to corrupt");
        using KvStore reopened = Open();
        Assert.True(reopened.GetStats().CorruptRecords >= 1);
        reopened.CreateModel(_m);
        reopened.CreateContext("m", "", "new", []);
    }

    public void Dispose() => _dir.Dispose();

    private static int IndexOf(byte[] haystack, byte[] needle, int from)
    {
        for (int i = from; i < haystack.Length - needle.Length; i++)
        {
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle))
            {
                return i;
            }
        }

        return from;
    }

    private KvStore Open(long budget = 64L << 20) => new(new StoreOptions
    {
        CpuBudgetBytes = budget,
        DataDirectory = _dir.Path,
        MaintenanceInterval = TimeSpan.Zero,
    });
}

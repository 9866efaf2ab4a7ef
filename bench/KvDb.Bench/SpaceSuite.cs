using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// space: how much disk a durable server uses for its live K/V and how much comes back. Through gRPC on loopback:
/// store N contexts (bf16, Llama-3-8B KV shape), checkpoint, measure the data directory against the live K/V bytes;
/// delete half, checkpoint, compact (Admin.Compact) while a reader sends EXACT Attend calls to a kept context; report the
/// directory before and after, the compaction's time and blocks moved, and the reader's p50/p99 before vs during the
/// compaction (same run). A small CPU budget keeps most blocks on disk only, so compaction reads them back.
/// </summary>
public static class SpaceSuite
{
    private const int KvHeads = 8;
    private const int QueryHeads = 32;
    private const int HeadDim = 128;

    /// <summary>Runs the suite and prints one JSON line.</summary>
    public static async Task RunAsync(string[] args)
    {
        int contexts = (int)SuiteOptions.Get(args, "contexts", 8);
        int tokens = (int)(SuiteOptions.Get(args, "tokens", 4096) / 1024 * 1024);
        int layers = (int)SuiteOptions.Get(args, "layers", 4);
        long cpuBudget = SuiteOptions.Get(args, "cpu-budget", 64L << 20);
        string dir = SuiteOptions.TempDir("space");
        try
        {
            await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions
            {
                Port = 0, HttpPort = -1, DataDirectory = dir, CpuBudgetBytes = cpuBudget, CompactionDeadRatio = 0,
            }).ConfigureAwait(false);
            using var client = new KvDbClient(server.Address);
            await client.CreateModelAsync(new Model { Name = "bench", NumLayers = layers, NumQueryHeads = QueryHeads, NumKvHeads = KvHeads, HeadDim = HeadDim, Dtype = DType.Bf16 }).ConfigureAwait(false);
            var w = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = 16 * 1024, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = HeadDim });
            ByteString k = ByteString.CopyFrom(w.KeyBytes(KvDType.BF16, 0, 1024));
            ByteString v = ByteString.CopyFrom(w.ValueBytes(KvDType.BF16, 0, 1024));
            for (int c = 0; c < contexts; c++)
            {
                Context ctx = await client.CreateContextAsync("bench", id: "ctx" + c).ConfigureAwait(false);
                await BenchAppend.AppendAsync(client, ctx.Id, layers, KvHeads, HeadDim, tokens, k, v, c * 1_000_003).ConfigureAwait(false);
                Console.Error.WriteLine($"space: stored context {c + 1} of {contexts}");
            }

            long perContext = (long)tokens * layers * 2 * KvHeads * HeadDim * 2;
            long live = contexts * perContext;
            await client.CheckpointAsync().ConfigureAwait(false);
            long afterCheckpoint = DirectoryBytes(dir);

            for (int c = 0; c < contexts / 2; c++)
            {
                await client.DeleteContextAsync("ctx" + c).ConfigureAwait(false);
            }

            await client.CheckpointAsync().ConfigureAwait(false);
            long liveAfterDelete = (contexts - (contexts / 2)) * perContext;
            long beforeCompaction = DirectoryBytes(dir);
            DiskSpace dead = (await client.GetStatsAsync().ConfigureAwait(false)).Disk;

            float[] q = w.Queries(1, 1);
            string reading = "ctx" + (contexts - 1);
            double[] quiet = await ReadForAsync(client, reading, q, TimeSpan.FromSeconds(SuiteOptions.Get(args, "baseline-seconds", 5)), null).ConfigureAwait(false);
            Console.Error.WriteLine($"space: baseline {quiet.Length} reads; compacting");
            CompactResponse r = null!;
            double[] during = await ReadForAsync(client, reading, q, TimeSpan.FromMinutes(5), async () => r = await client.CompactAsync().ConfigureAwait(false)).ConfigureAwait(false);
            long afterCompaction = DirectoryBytes(dir);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{{\"suite\":\"space\",\"contexts\":{contexts},\"tokens\":{tokens},\"layers\":{layers},\"cpu_budget\":{cpuBudget},\"live_bytes\":{live},\"dir_bytes_after_checkpoint\":{afterCheckpoint},\"ratio_after_checkpoint\":{(double)afterCheckpoint / live:F3}," +
                $"\"live_bytes_after_delete\":{liveAfterDelete},\"dead_ratio_before_compaction\":{dead.BlockLogDeadRatio:F3},\"dir_bytes_before_compaction\":{beforeCompaction},\"dir_bytes_after_compaction\":{afterCompaction},\"ratio_after_compaction\":{(double)afterCompaction / liveAfterDelete:F3}," +
                $"\"compaction_ms\":{r.Milliseconds:F1},\"blocks_moved\":{r.BlocksMoved},\"bytes_moved\":{r.BytesMoved},\"moved_mb_per_s\":{r.BytesMoved / 1e6 / (r.Milliseconds / 1e3):F1}," +
                $"\"attend_reads_quiet\":{quiet.Length},\"attend_p50_us_quiet\":{Percentile.Median(quiet):F0},\"attend_p99_us_quiet\":{Percentile.Of(quiet, 0.99):F0}," +
                $"\"attend_reads_during\":{during.Length},\"attend_p50_us_during\":{Percentile.Median(during):F0},\"attend_p99_us_during\":{Percentile.Of(during, 0.99):F0},\"p99_during_vs_quiet\":{Percentile.Of(during, 0.99) / Percentile.Of(quiet, 0.99):F2}}}"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Sends EXACT Attend calls one after another for <paramref name="duration"/>, or while <paramref name="work"/> runs; returns each call's microseconds.</summary>
    private static async Task<double[]> ReadForAsync(KvDbClient client, string contextId, float[] q, TimeSpan duration, Func<Task>? work)
    {
        var samples = new List<double>();
        Task running = work is null ? Task.Delay(duration) : Task.Run(work);
        var clock = Stopwatch.StartNew();
        var plan = new Plan { Kind = PlanKind.Exact };
        while (!running.IsCompleted && clock.Elapsed < duration)
        {
            long t0 = Stopwatch.GetTimestamp();
            await client.AttendAsync(contextId, 0, q, 1, QueryHeads, HeadDim, plan: plan).ConfigureAwait(false);
            samples.Add(Stopwatch.GetElapsedTime(t0).TotalMicroseconds);
        }

        await running.ConfigureAwait(false);
        return samples.Count == 0 ? [0] : [.. samples];
    }

    private static long DirectoryBytes(string dir)
    {
        long bytes = 0;
        foreach (string f in Directory.GetFiles(dir, "*", SearchOption.AllDirectories))
        {
            try
            {
                bytes += new FileInfo(f).Length;
            }
            catch (FileNotFoundException)
            {
                // deleted by a truncation since the listing
            }
        }

        return bytes;
    }
}

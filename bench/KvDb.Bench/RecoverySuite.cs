using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// recovery: store ~1 GB through the real kvdb server process (--data DIR), SIGKILL it, restart it on the same
/// directory and time (from restart to the first answered GetContext, process start included) until it listens and
/// answers. Two cases: everything only in the write-ahead log (periodic checkpoints disabled), and after an
/// Admin.Checkpoint (blocks in the disk tier, loaded lazily). Also reports the bare process start on an empty directory. Needs src/Cli built in Release (dotnet build -c Release src/Cli).
/// </summary>
public static class RecoverySuite
{
    /// <summary>Runs the suite and prints one JSON line.</summary>
    public static async Task RunAsync(string[] args)
    {
        long targetBytes = SuiteOptions.Get(args ?? [], "bytes", 1L << 30);
        string kvdb = SuiteOptions.Get(args ?? [], "kvdb", FindKvdb());
        (double walOnly, long stored) = await CaseAsync(kvdb, targetBytes, checkpoint: false).ConfigureAwait(false);
        (double checkpointed, _) = await CaseAsync(kvdb, targetBytes, checkpoint: true).ConfigureAwait(false);
        double empty = await EmptyStartAsync(kvdb).ConfigureAwait(false);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"suite\":\"recovery\",\"stored_bytes\":{stored},\"recovery_s\":{walOnly:F3},\"recovery_after_checkpoint_s\":{checkpointed:F3},\"empty_start_s\":{empty:F3}}}"));
    }

    private static async Task<double> EmptyStartAsync(string kvdb)
    {
        string dir = SuiteOptions.TempDir("empty");
        try
        {
            var clock = Stopwatch.StartNew();
            (Process p, string address) = await StartAsync(kvdb, dir, 0).ConfigureAwait(false);
            using (var client = new KvDbClient(address))
            {
                await client.ListContextsAsync().ConfigureAwait(false);
            }

            double seconds = clock.Elapsed.TotalSeconds;
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return seconds;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(double Seconds, long Stored)> CaseAsync(string kvdb, long targetBytes, bool checkpoint)
    {
        string dir = SuiteOptions.TempDir("recovery");
        try
        {
            const int kvHeads = 8;
            const int headDim = 128;
            const int layers = 4;
            long perToken = (long)layers * 2 * kvHeads * headDim * 2;
            int tokens = (int)(targetBytes / perToken / 1024 * 1024);
            // Without a checkpoint everything must come back from the log: periodic checkpoints are pushed out of reach.
            (Process p, string address) = await StartAsync(kvdb, dir, checkpoint ? 0 : 1L << 40).ConfigureAwait(false);
            using (var client = new KvDbClient(address))
            {
                await client.CreateModelAsync(new Model { Name = "bench", NumLayers = layers, NumQueryHeads = 32, NumKvHeads = kvHeads, HeadDim = headDim, Dtype = DType.Bf16 }).ConfigureAwait(false);
                var w = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = 16 * 1024, NumKvHeads = kvHeads, NumQueryHeads = 32, HeadDim = headDim });
                ByteString k = ByteString.CopyFrom(w.KeyBytes(KvDType.BF16, 0, 1024));
                ByteString v = ByteString.CopyFrom(w.ValueBytes(KvDType.BF16, 0, 1024));

                // Eight contexts of an eighth each, so recovery rebuilds several manifests.
                for (int c = 0; c < 8; c++)
                {
                    Context ctx = await client.CreateContextAsync("bench", id: "ctx" + c).ConfigureAwait(false);
                    await BenchAppend.AppendAsync(client, ctx.Id, layers, kvHeads, headDim, tokens / 8, k, v, c * 1_000_003).ConfigureAwait(false);
                }

                if (checkpoint)
                {
                    await client.CheckpointAsync().ConfigureAwait(false);
                }
            }

            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            var clock = Stopwatch.StartNew();
            (Process p2, string address2) = await StartAsync(kvdb, dir, 0).ConfigureAwait(false);
            using (var client = new KvDbClient(address2))
            {
                Context c7 = await client.GetContextAsync("ctx7").ConfigureAwait(false);
                double seconds = clock.Elapsed.TotalSeconds;
                if (c7.NumTokens != tokens / 8)
                {
                    throw new InvalidOperationException($"recovered {c7.NumTokens} tokens, expected {tokens / 8}");
                }

                p2.Kill(entireProcessTree: true);
                p2.WaitForExit();
                return (seconds, tokens / 8 * 8 * perToken);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(Process, string)> StartAsync(string kvdb, string dir, long checkpointLogBytes)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])[kvdb, "serve", "--port", "0", "--data", dir, "--cpu-budget", (4L << 30).ToString(CultureInfo.InvariantCulture), "--checkpoint-log-bytes", checkpointLogBytes.ToString(CultureInfo.InvariantCulture)])
        {
            info.ArgumentList.Add(a);
        }

        Process p = Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet");
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) { Console.Error.WriteLine(e.Data); } };
        p.BeginErrorReadLine();
        while (await p.StandardOutput.ReadLineAsync().ConfigureAwait(false) is string line)
        {
            if (line.StartsWith("kvdb listening on ", StringComparison.Ordinal))
            {
                return (p, line["kvdb listening on ".Length..].Trim());
            }
        }

        throw new InvalidOperationException("kvdb exited before listening");
    }

    private static string FindKvdb()
    {
        DirectoryInfo? dir = new(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "KvDb.sln")))
        {
            dir = dir.Parent;
        }

        return dir is null ? "kvdb.dll" : Path.Combine(dir.FullName, "src", "Cli", "bin", "Release", "net10.0", "kvdb.dll");
    }
}

using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.TestKit.Faults;

/// <summary>
/// kill -9 trials of one operation against the real server (<see cref="ServerProcess"/>) on one data directory:
/// start (timed: the restart), check everything acknowledged so far (<see cref="AppendLedger.VerifyAsync"/>), run
/// the operation's workload for a random 0.2–1.4 s, SIGKILL, repeat; one last restart is checked too.
/// Every call carries a deadline and every loop stops with the kill, so a hung server fails a trial instead of
/// hanging the run.
/// </summary>
public static class KillTrials
{
    /// <summary>The bound on one restart (process start to the first answered call).</summary>
    public static readonly TimeSpan RestartLimit = TimeSpan.FromSeconds(60);

    /// <summary>The CPU budget of tier-move trials: a few hundred 4 KiB blocks, so appends and reads move blocks to and from disk.</summary>
    public const long TierMoveCpuBudget = 2L << 20;

    private static readonly TimeSpan VerifyLimit = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan CallLimit = TimeSpan.FromSeconds(30);

    public static async Task<KillTrialReport> RunAsync(FaultOperation operation, int trials, string dataDirectory, int seed, Action<string>? progress = null)
    {
        // Index saves need contexts past a base segment (LayerIndexCatalog.DefaultSegmentTokens): longer contexts, bigger
        // and slower appends. Elsewhere small layers stay far below the tier-move CPU budget.
        bool indexes = operation == FaultOperation.IndexSave;
        var ledger = new AppendLedger(indexes ? 6144 : 2048);
        var pace = indexes ? (MaxAppend: 1024, Pause: TimeSpan.FromMilliseconds(50)) : (MaxAppend: 120, Pause: TimeSpan.FromMilliseconds(10));
        var total = new LedgerCheck();
        var restarts = new List<double>();
        var rng = new Random(seed);
        int restartFailures = 0;
        var done = new OperationCounter();
        long budget = operation == FaultOperation.TierMove ? TierMoveCpuBudget : 64L << 20;
        for (int trial = 0; trial <= trials; trial++)
        {
            var clock = Stopwatch.StartNew();
            ServerProcess server;
            try
            {
                server = await ServerProcess.StartAsync(dataDirectory, budget, RestartLimit, "--http-port", "-1").ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException)
            {
                restartFailures++;
                total.Torn($"trial {trial}: the server did not restart: {e.Message}");
                break;
            }

            using (server)
            using (var client = new KvDbClient(server.Address))
            {
                using (var verifyLimit = new CancellationTokenSource(VerifyLimit))
                {
                    await client.GetStatsAsync(verifyLimit.Token).ConfigureAwait(false);
                    if (trial > 0)
                    {
                        restarts.Add(clock.Elapsed.TotalSeconds);
                    }
                    else
                    {
                        await client.CreateModelAsync(DeterministicKv.Model(), verifyLimit.Token).ConfigureAwait(false);
                    }

                    LedgerCheck check = await ledger.VerifyAsync(client, rng, verifyLimit.Token).ConfigureAwait(false);
                    total.Add(check);
                    if (trial == trials)
                    {
                        StatsResponse stats = await client.GetStatsAsync(verifyLimit.Token).ConfigureAwait(false);
                        if (stats.CorruptRecords != 0)
                        {
                            total.Torn($"the last restart reports {stats.CorruptRecords} corrupt records: {string.Join(" | ", server.Output.Where(l => l.Contains("corrupt", StringComparison.OrdinalIgnoreCase)).Take(3))}");
                        }

                        break;
                    }
                }

                await RunUntilKilledAsync(operation, server, client, ledger, total, done, new Random(rng.Next()), pace, TimeSpan.FromMilliseconds(200 + rng.Next(1200))).ConfigureAwait(false);
            }

            progress?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{operation} trial {trial + 1}/{trials}: {ledger.Contexts} contexts, {ledger.AckedTokens} tokens acknowledged, lost {total.LostTokens}, torn {total.TornReads}"));
        }

        int indexFiles = Directory.Exists(Path.Combine(dataDirectory, "indexes")) ? Directory.GetFiles(Path.Combine(dataDirectory, "indexes")).Length : 0;
        return new KillTrialReport(operation, restarts.Count, total.LostTokens, total.TornReads, restartFailures, restarts, ledger.AckedTokens, ledger.Contexts, indexFiles, done.Value, [.. total.Problems]);
    }

    /// <summary>Runs the appender and the operation's loop, kills the server after <paramref name="killAfter"/>, and waits for both loops to stop.</summary>
    private static async Task RunUntilKilledAsync(FaultOperation operation, ServerProcess server, KvDbClient client, AppendLedger ledger, LedgerCheck check, OperationCounter done, Random rng, (int MaxAppend, TimeSpan Pause) pace, TimeSpan killAfter)
    {
        using var stop = new CancellationTokenSource();
        var killed = new KillFlag();
        var firstAck = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var loops = new List<Task> { Guard(AppendLoopAsync(client, ledger, new Random(rng.Next()), pace, firstAck, operation == FaultOperation.Append ? done : new OperationCounter(), stop.Token), killed, check, "append") };
        Func<CancellationToken, Task>? extra = operation switch
        {
            FaultOperation.Checkpoint => t => CheckpointLoopAsync(client, done, t),
            FaultOperation.TierMove => t => ReadBackLoopAsync(client, ledger, check, done, new Random(rng.Next()), t),
            FaultOperation.IndexSave => t => IndexedAttendLoopAsync(client, ledger, done, new Random(rng.Next()), t),
            FaultOperation.Compaction => t => CompactLoopAsync(client, done, new Random(rng.Next()), t),
            _ => null,
        };
        if (extra is not null)
        {
            loops.Add(Guard(extra(stop.Token), killed, check, operation.ToString()));
        }

        // The random point is counted from the first acknowledged append and the first completed operation of this
        // process: a fresh server on a busy machine can spend the whole window compiling its first calls (a compaction
        // cycle alone takes seconds there), and a kill there tests nothing new.
        long before = done.Value;
        var waited = System.Diagnostics.Stopwatch.StartNew();
        await Task.WhenAny(firstAck.Task, Task.Delay(CallLimit)).ConfigureAwait(false);
        while (done.Value == before && waited.Elapsed < CallLimit && !loops.All(l => l.IsCompleted))
        {
            await Task.Delay(10).ConfigureAwait(false);
        }

        await Task.Delay(killAfter).ConfigureAwait(false);
        killed.Value = true;
        server.Kill();
        await stop.CancelAsync().ConfigureAwait(false);
        Task all = Task.WhenAll(loops);
        if (await Task.WhenAny(all, Task.Delay(CallLimit)).ConfigureAwait(false) != all)
        {
            check.Torn($"{operation}: a workload loop did not stop within {CallLimit.TotalSeconds} s of the kill");
        }
    }

    /// <summary>Failures after the kill are expected; one before it (the server refused or broke a call) is a problem.</summary>
    private static async Task Guard(Task loop, KillFlag killed, LedgerCheck check, string what)
    {
        try
        {
            await loop.ConfigureAwait(false);
        }
        catch (Exception e) when (e is RpcException or IOException or HttpRequestException or OperationCanceledException or ObjectDisposedException)
        {
            if (!killed.Value)
            {
                check.Torn($"{what} failed while the server was up: {e.GetType().Name}: {e.Message}");
            }
        }
    }

    private static async Task AppendLoopAsync(KvDbClient client, AppendLedger ledger, Random rng, (int MaxAppend, TimeSpan Pause) pace, TaskCompletionSource firstAck, OperationCounter done, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            string id = ledger.Pick(rng, out bool isNew);
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
            limit.CancelAfter(CallLimit);
            if (isNew)
            {
                await client.CreateContextAsync(DeterministicKv.ModelName, id: id, cancellationToken: limit.Token).ConfigureAwait(false);
                ledger.Created(id);
            }

            long from = ledger.Acked(id);
            int n = 1 + rng.Next(pace.MaxAppend);
            ledger.Sending(id, from + n);
            long acked = await DeterministicKv.AppendAsync(client, id, from, n, limit.Token).ConfigureAwait(false);
            if (acked != from + n)
            {
                throw new InvalidDataException($"append to {id} from {from} of {n} tokens was acknowledged at {acked}");
            }

            ledger.Acknowledged(id, acked);
            done.Add();
            firstAck.TrySetResult();

            // Paced, so fifty trials store tens of MB rather than gigabytes and every restart re-checks all of it.
            await Task.Delay(pace.Pause, stop).ConfigureAwait(false);
        }
    }

    private static async Task CheckpointLoopAsync(KvDbClient client, OperationCounter done, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
            limit.CancelAfter(CallLimit);
            await client.CheckpointAsync(limit.Token).ConfigureAwait(false);
            done.Add();
        }
    }

    /// <summary>Reads random layers back (promoting demoted blocks) and now and then evicts everything to disk; every read is checked.</summary>
    private static async Task ReadBackLoopAsync(KvDbClient client, AppendLedger ledger, LedgerCheck check, OperationCounter done, Random rng, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
            limit.CancelAfter(CallLimit);
            var contexts = ledger.Snapshot(1);
            if (rng.Next(8) == 0)
            {
                await client.EvictAsync(0, limit.Token).ConfigureAwait(false);
                done.Add();
            }
            else if (contexts.Count > 0)
            {
                (string id, _) = contexts[rng.Next(contexts.Count)];
                await AppendLedger.CheckLayerAsync(client, id, rng.Next(DeterministicKv.Layers), check, limit.Token).ConfigureAwait(false);
                done.Add();
            }
            else
            {
                await Task.Delay(20, stop).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Sparse-plan Attend calls on grown contexts: each one asks for index builds, which save .kix segments.</summary>
    private static async Task IndexedAttendLoopAsync(KvDbClient client, AppendLedger ledger, OperationCounter done, Random rng, CancellationToken stop)
    {
        PlanKind[] kinds = [PlanKind.BlockTopK, PlanKind.CentroidTopK, PlanKind.LshTopK];
        var q = new float[DeterministicKv.QueryHeads * DeterministicKv.HeadDim];
        while (!stop.IsCancellationRequested)
        {
            // Contexts past a base segment get their base built and saved; shorter ones only build in memory.
            var contexts = ledger.Snapshot(4096);
            contexts = contexts.Count > 0 && rng.Next(4) != 0 ? contexts : ledger.Snapshot(4 * DeterministicKv.BlockSize);
            if (contexts.Count == 0)
            {
                await Task.Delay(20, stop).ConfigureAwait(false);
                continue;
            }

            for (int i = 0; i < q.Length; i++)
            {
                q[i] = (float)(rng.NextDouble() * 2 - 1);
            }

            using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
            limit.CancelAfter(CallLimit);
            (string id, _) = contexts[rng.Next(contexts.Count)];
            await client.AttendAsync(id, rng.Next(DeterministicKv.Layers), q, 1, DeterministicKv.QueryHeads, DeterministicKv.HeadDim,
                plan: new Plan { Kind = kinds[rng.Next(kinds.Length)] }, cancellationToken: limit.Token).ConfigureAwait(false);
            done.Add();
        }
    }

    /// <summary>
    /// Gives the block log dead records and compacts it, over and over: a throwaway context is appended, moved to disk
    /// (with every other block, so live blocks are copied forward too), deleted, and Admin.Compact runs.
    /// </summary>
    private static async Task CompactLoopAsync(KvDbClient client, OperationCounter done, Random rng, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
            limit.CancelAfter(CallLimit);
            string id = "v" + rng.Next().ToString(CultureInfo.InvariantCulture);
            await client.CreateContextAsync(DeterministicKv.ModelName, id: id, cancellationToken: limit.Token).ConfigureAwait(false);
            await DeterministicKv.AppendAsync(client, id, 0, 256, limit.Token).ConfigureAwait(false);
            await client.EvictAsync(0, limit.Token).ConfigureAwait(false);
            await client.DeleteContextAsync(id, limit.Token).ConfigureAwait(false);
            await client.CompactAsync(limit.Token).ConfigureAwait(false);
            done.Add();
        }
    }

    /// <summary>Calls of the operation that completed, across trials.</summary>
    private sealed class OperationCounter
    {
        private long _value;

        public long Value => Interlocked.Read(ref _value);

        public void Add() => Interlocked.Increment(ref _value);
    }

    /// <summary>Set once the kill is sent: from then on, failed calls are what a kill looks like.</summary>
    private sealed class KillFlag
    {
        public volatile bool Value;
    }
}

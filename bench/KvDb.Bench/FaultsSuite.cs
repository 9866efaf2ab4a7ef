using KvDb.TestKit.Faults;

namespace KvDb.Bench;

/// <summary>
/// faults: kill -9 at random points of each operation (append, checkpoint, index save, tier moves, compaction)
/// against the real kvdb server process (<see cref="KillTrials"/>, the harness the integration tests run a few
/// trials of). One JSON line per operation: trials, acknowledged tokens lost and torn reads (both must be 0),
/// restart failures, restart time p50/max. Needs src/Cli built in Release.
/// </summary>
public static class FaultsSuite
{
    public static async Task RunAsync(string[] args)
    {
        int trials = (int)SuiteOptions.Get(args, "trials", 50);
        string ops = SuiteOptions.Get(args, "ops", "append,checkpoint,index-save,tier-move,compaction");
        foreach (string name in ops.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            FaultOperation operation = Parse(name);
            string dir = SuiteOptions.TempDir("faults-" + name);
            try
            {
                KillTrialReport r = await KillTrials.RunAsync(operation, trials, dir, seed: 20261207 + (int)operation, m => Console.Error.WriteLine(m)).ConfigureAwait(false);
                var line = new JsonLine()
                    .Add("suite", "faults")
                    .Add("operation", name)
                    .Add("trials", r.Trials)
                    .Add("losses", r.LostTokens)
                    .Add("torn", r.TornReads)
                    .Add("restart_failures", r.RestartFailures)
                    .Add("restart_p50_s", r.RestartP50Seconds, 3)
                    .Add("restart_max_s", r.RestartMaxSeconds, 3)
                    .Add("acked_tokens", r.AckedTokens)
                    .Add("contexts", r.Contexts)
                    .Add("index_files", r.IndexFiles)
                    .Add("operations_done", r.OperationsDone);
                if (r.Problems.Count > 0)
                {
                    line.Add("first_problem", r.Problems[0]);
                }

                line.WriteTo(Console.Out);
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private static FaultOperation Parse(string name) => name switch
    {
        "append" => FaultOperation.Append,
        "checkpoint" => FaultOperation.Checkpoint,
        "index-save" => FaultOperation.IndexSave,
        "tier-move" => FaultOperation.TierMove,
        "compaction" => FaultOperation.Compaction,
        _ => throw new ArgumentException($"unknown operation \"{name}\"; use append, checkpoint, index-save, tier-move or compaction", nameof(name)),
    };
}

namespace KvDb.Bench;

/// <summary>Benchmark entry point: the first argument names the suite.</summary>
public static class Program
{
    /// <summary>Runs the named suite; returns 2 with usage for an unknown one.</summary>
    public static int Main(string[] args)
    {
        string suite = args.Length > 0 ? args[0] : string.Empty;
        switch (suite)
        {
            case "index":
                IndexSuite.Run(args[1..]);
                return 0;
            default:
                Console.Error.WriteLine("usage: KvDb.Bench <suite> [options]; suites: index");
                return 2;
        }
    }
}

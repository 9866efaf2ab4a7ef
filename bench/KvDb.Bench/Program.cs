using KvDb.Bench;

// One suite per invocation, so each suite's numbers come from a fresh process with nothing else in its heap.
string suite = args.Length > 0 ? args[0] : "";
string[] rest = args.Length > 1 ? args[1..] : [];
switch (suite)
{
    case "exact":
        ExactSuite.Run(rest, Console.Out);
        return 0;
    default:
        Console.Error.WriteLine("usage: KvDb.Bench <suite> [options]");
        Console.Error.WriteLine("suites:");
        Console.Error.WriteLine("  exact [ctx ...]   exact CPU attention over a bf16 context vs a streaming read of the same bytes");
        return 2;
}

using KvDb.Load;

// bench/KvDb.Load: N engines against one kvdb server for a fixed time; one JSON object per line on stdout; exit code 0
// when no server fault, stall or deadlock happened and the server's RSS stayed under its budget plus the overhead.
LoadOptions options;
try
{
    options = LoadOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine("kvdb-load: " + e.Message);
    return 2;
}

ServerChild? child = null;
string? temp = null;
try
{
    string address;
    if (options.Server is not null)
    {
        address = options.Server;
    }
    else
    {
        string data = options.DataDirectory ?? (temp = Directory.CreateTempSubdirectory("kvdb-load-").FullName);
        child = await ServerChild.StartAsync(ServerChild.FindKvdbDll(), options.CpuBudgetBytes, data, options.ServerArguments);
        address = child.Address;
    }

    LoadReport report = await LoadRun.RunAsync(options, address, child?.Pid, Console.WriteLine, child?.HttpAddress);
    Console.WriteLine(report.ToJson());
    return report.Passed ? 0 : 1;
}
finally
{
    child?.Dispose();
    if (temp is not null)
    {
        Directory.Delete(temp, recursive: true);
    }
}

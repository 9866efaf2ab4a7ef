using KvDb.Bench;

// Suites print one JSON line each; run in Release: dotnet run -c Release --project bench/KvDb.Bench -- SUITE [options]
string suite = args.Length > 0 ? args[0] : string.Empty;
string[] rest = args.Length > 1 ? args[1..] : [];
switch (suite)
{
    case "ingest":
        await IngestSuite.RunAsync(rest);
        return 0;
    case "prefix":
        await PrefixSuite.RunAsync(rest);
        return 0;
    case "recovery":
        await RecoverySuite.RunAsync(rest);
        return 0;
    default:
        Console.Error.WriteLine("usage: KvDb.Bench ingest|prefix|recovery [--name value ...]");
        return 2;
}

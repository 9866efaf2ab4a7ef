using KvDb.Client;
using KvDb.Fuzz.Requests;
using KvDb.Server;

namespace KvDb.Bench;

/// <summary>
/// Suite "fuzz-requests": the request-level fuzzer (fuzz/Requests) against an in-process durable server with an admin
/// key on loopback: --requests mutated calls (default 100,000) from --workers concurrent callers, at most --seconds.
/// One JSON line with the status-code histogram, requests/s, violations and whether the protected data is intact, then
/// one line per violation (at most 50).
/// </summary>
internal static class FuzzRequestsSuite
{
    public static async Task RunAsync(string[] args)
    {
        const string adminKey = "fuzz-requests-admin";
        int requests = (int)SuiteOptions.Get(args, "requests", 100_000);
        var options = new RequestFuzzOptions(requests, (int)SuiteOptions.Get(args, "workers", 4), (int)SuiteOptions.Get(args, "seed", 16))
        {
            MaxDuration = TimeSpan.FromSeconds(SuiteOptions.Get(args, "seconds", 1800)),
        };
        string data = SuiteOptions.TempDir("fuzz-requests");
        try
        {
            RequestFuzzReport report;
            await using (KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data, AdminKey = adminKey, CpuBudgetBytes = 64L << 20 }).ConfigureAwait(false))
            {
                using var client = new KvDbClient(server.Address, adminKey);
                report = await RequestFuzzer.RunAsync(client, options).ConfigureAwait(false);
            }

            var line = new JsonLine()
                .Add("suite", "fuzz-requests")
                .Add("requests", report.Requests)
                .Add("seconds", report.Elapsed.TotalSeconds, 1)
                .Add("requests_per_s", report.Requests / report.Elapsed.TotalSeconds, 0)
                .Add("violations", report.Violations.Count)
                .Add("data_intact", report.DataIntact ? 1 : 0);
            foreach ((Grpc.Core.StatusCode code, int n) in report.Statuses.OrderBy(p => p.Key))
            {
                line.Add("status_" + code, n);
            }

            line.WriteTo(Console.Out);
            foreach (string violation in report.Violations.Take(50))
            {
                new JsonLine().Add("suite", "fuzz-requests").Add("violation", violation).WriteTo(Console.Out);
            }
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}

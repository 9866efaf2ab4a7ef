using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Server.Tests;

/// <summary>The HTTP endpoint: Prometheus metrics that agree with what the server did and with Admin.GetStats, health, and the admin key on /metrics.</summary>
public sealed class MetricsTests
{
    [Fact]
    public async Task Metrics_count_calls_by_method_and_code_and_agree_with_get_stats()
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, CpuBudgetBytes = 64L << 20 });
        using var client = new KvDbClient(server.Address);
        Model model = await client.CreateModelAsync(TestModels.Small("metrics"));
        await client.CreateContextAsync(model.Name, id: "m");
        await EndToEndTests.Load(client, model, "m", 100);
        float[] q = TestModels.Workload(model, 100, 0).Queries(1, 2);
        for (int i = 0; i < 3; i++)
        {
            await client.AttendAsync("m", 0, q, 1, model.NumQueryHeads, model.HeadDim);
        }

        await Assert.ThrowsAsync<RpcException>(() => client.AttendAsync("absent", 0, q, 1, model.NumQueryHeads, model.HeadDim));
        StatsResponse stats = await client.GetStatsAsync();

        using var http = new HttpClient();
        string text = await http.GetStringAsync(server.HttpAddress + "/metrics");
        Assert.Equal(3, Value(text, "kvdb_rpc_requests_total{method=\"/kvdb.v1.Attention/Attend\",code=\"OK\"}"));
        Assert.Equal(1, Value(text, "kvdb_rpc_requests_total{method=\"/kvdb.v1.Attention/Attend\",code=\"NotFound\"}"));
        Assert.Equal(3, Value(text, "kvdb_attend_requests_total{plan=\"exact\"}"));
        Assert.Equal(3.0 * 100 * model.NumKvHeads, Value(text, "kvdb_attend_tokens_attended_total{plan=\"exact\"}")); // (token, KV head) pairs
        Assert.Equal(4, Value(text, "kvdb_rpc_duration_seconds_count{method=\"/kvdb.v1.Attention/Attend\"}"));
        Assert.Equal(stats.Contexts, Value(text, "kvdb_contexts"));
        Assert.Equal(stats.LogicalBytes, Value(text, "kvdb_logical_bytes"));
        Assert.Equal(stats.Tiers.Single(t => t.Name == "cpu").Bytes, Value(text, "kvdb_tier_bytes{tier=\"cpu\"}"));
        Assert.Equal(stats.Tiers.Single(t => t.Name == "cpu").Misses, Value(text, "kvdb_tier_promotions_total{tier=\"cpu\"}"));
        Assert.Equal(0, Value(text, "kvdb_tier_demotions_total{tier=\"cpu\"}"));
        Assert.Contains("process_cpu_seconds_total", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\"m\"", text, StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(server.HttpAddress + "/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(server.HttpAddress + "/readyz")).StatusCode);
    }

    [Fact]
    public async Task Demotions_and_promotions_of_the_cpu_tier_are_counted()
    {
        string data = Path.Combine(Path.GetTempPath(), "kvdb-metrics-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data, CpuBudgetBytes = 64L << 20 });
            using var client = new KvDbClient(server.Address);
            Model model = await client.CreateModelAsync(TestModels.Small("metrics-tiers"));
            await client.CreateContextAsync(model.Name, id: "t");
            await EndToEndTests.Load(client, model, "t", 256);
            EvictResponse evicted = await client.EvictAsync(0);
            Assert.True(evicted.Blocks > 0);
            float[] q = TestModels.Workload(model, 256, 0).Queries(1, 3);
            await client.AttendAsync("t", 0, q, 1, model.NumQueryHeads, model.HeadDim);

            using var http = new HttpClient();
            string text = await http.GetStringAsync(server.HttpAddress + "/metrics");
            StatsResponse stats = await client.GetStatsAsync();
            Assert.Equal(evicted.Blocks, Value(text, "kvdb_tier_demotions_total{tier=\"cpu\"}"));
            double promoted = Value(text, "kvdb_tier_promotions_total{tier=\"cpu\"}");
            Assert.True(promoted > 0, "the query read demoted blocks back");
            Assert.Equal(stats.Tiers.Single(t => t.Name == "cpu").Misses, promoted);

            // The append was acknowledged after its log records were durable; a checkpoint is timed too.
            Assert.True(Value(text, "kvdb_wal_commit_duration_seconds_count") >= 1);
            await client.CheckpointAsync();
            text = await http.GetStringAsync(server.HttpAddress + "/metrics");
            Assert.Equal(1, Value(text, "kvdb_checkpoint_duration_seconds_count"));
        }
        finally
        {
            if (Directory.Exists(data))
            {
                Directory.Delete(data, recursive: true);
            }
        }
    }

    [Fact]
    public async Task Index_updates_are_counted_and_timed_by_family()
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, CpuBudgetBytes = 64L << 20 });
        using var client = new KvDbClient(server.Address);
        Model model = await client.CreateModelAsync(TestModels.Small("metrics-index"));
        await client.CreateContextAsync(model.Name, id: "i");
        await EndToEndTests.Load(client, model, "i", 4096);
        float[] q = TestModels.Workload(model, 4096, 0).Queries(1, 4);
        using var http = new HttpClient();
        double finished = 0;
        for (int i = 0; i < 100 && finished < 1; i++)
        {
            // AUTO asks for its index; the first requests start the build in the background.
            await client.AttendAsync("i", 0, q, 1, model.NumQueryHeads, model.HeadDim, plan: new Plan { Kind = PlanKind.Auto });
            string text = await http.GetStringAsync(server.HttpAddress + "/metrics");
            finished = TryValue(text, "kvdb_index_updates_finished_total{family=\"centroid\",outcome=\"ok\"}");
            if (finished >= 1)
            {
                Assert.True(Value(text, "kvdb_index_updates_started_total{family=\"centroid\"}") >= 1);
                Assert.True(Value(text, "kvdb_index_update_duration_seconds_count{family=\"centroid\"}") >= 1);
            }
            else
            {
                await Task.Delay(100);
            }
        }

        Assert.True(finished >= 1, "no centroid index update finished within 10 s");
    }

    [Fact]
    public async Task With_an_admin_key_metrics_need_it_and_health_does_not()
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, AdminKey = "metrics-admin" });
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(server.HttpAddress + "/metrics")).StatusCode);
        using var wrong = new HttpRequestMessage(HttpMethod.Get, server.HttpAddress + "/metrics") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "nope") } };
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(wrong)).StatusCode);
        using var right = new HttpRequestMessage(HttpMethod.Get, server.HttpAddress + "/metrics") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "metrics-admin") } };
        HttpResponseMessage ok = await http.SendAsync(right);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Contains("kvdb_contexts", await ok.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(server.HttpAddress + "/healthz")).StatusCode);
    }

    [Fact]
    public async Task The_grafana_dashboard_queries_only_metrics_the_server_exports()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "KvDb.sln")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        Assert.NotNull(dir);
        string dashboard = File.ReadAllText(Path.Combine(dir!, "deploy", "grafana", "kvdb-dashboard.json"));
        using System.Text.Json.JsonDocument doc = System.Text.Json.JsonDocument.Parse(dashboard);
        var exprs = doc.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => t.GetProperty("expr").GetString()!)).ToList();
        Assert.True(exprs.Count >= 10);

        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false });
        using var client = new KvDbClient(server.Address);
        await client.ListContextsAsync();
        using var http = new HttpClient();
        string text = await http.GetStringAsync(server.HttpAddress + "/metrics");
        foreach (string expr in exprs)
        {
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(expr, @"\b(kvdb|process|dotnet)_[a-z_]+"))
            {
                // A family is declared (# TYPE) even before it has series (labelled metrics get theirs on first use).
                string family = System.Text.RegularExpressions.Regex.Replace(m.Value, "_(bucket|count|sum)$", string.Empty);
                Assert.True(text.Contains("# TYPE " + family + " ", StringComparison.Ordinal), $"the dashboard queries {m.Value}, which /metrics does not export");
            }
        }
    }

    private static double TryValue(string text, string series) =>
        text.Split('\n').Any(l => l.StartsWith(series + " ", StringComparison.Ordinal)) ? Value(text, series) : 0;

    /// <summary>The value of one series line "name{labels} value" of the exposition text.</summary>
    internal static double Value(string text, string series)
    {
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(series.Length + 1)..].Trim(), CultureInfo.InvariantCulture);
            }
        }

        throw new Xunit.Sdk.XunitException($"no series {series} in the metrics");
    }
}

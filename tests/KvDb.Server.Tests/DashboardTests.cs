using System.Text.Json;
using Grpc.Core;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.QueryEngine.Planning;
using KvDb.Workload;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace KvDb.Server.Tests;

/// <summary>
/// The admin dashboard in a real browser: Debian's headless Chromium driven through chromedriver (Selenium), against
/// a durable server with an admin key. The page's numbers must equal Admin.GetStats; a context appended through gRPC
/// must appear; pin, evict and delete clicked on the page must show their effect through gRPC. Each page is
/// screenshotted into KVDB_DASHBOARD_SHOTS (default: dashboard-screenshots beside the test assembly;
/// docs/dashboard.md's pictures are made by running the test with it set to docs/dashboard).
/// </summary>
public sealed class DashboardTests : IAsyncLifetime
{
    private const string AdminKey = "dashboard-admin-key";
    private const string Chromium = "/usr/bin/chromium";
    private const string ChromeDriver = "/usr/bin/chromedriver";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>Tokens per layer of the heat-map contexts: long enough that AUTO samples under the uncalibrated costs.</summary>
    private const int HeadsTokens = 8192;
    private KeyedServer? _server;

    public async Task InitializeAsync() => _server = await KeyedServer.StartAsync(AdminKey);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [SkippableFact]
    public async Task Pages_show_the_servers_state_and_their_actions_take_effect()
    {
        Skip.IfNot(File.Exists(Chromium) && File.Exists(ChromeDriver), "needs Debian's chromium and chromium-driver (./kvdb.sh test installs them)");
        using var admin = new KvDbClient(_server!.Address, AdminKey);
        Model model = await admin.CreateModelAsync(TestModels.Small("dash-model"));
        await admin.CreateContextAsync(model.Name, id: "dash-pinned");
        await EndToEndTests.Load(admin, model, "dash-pinned", 256);
        await admin.CreateContextAsync(model.Name, "cold", "dash-cold"); // another namespace: no blocks shared with the pinned one
        await EndToEndTests.Load(admin, model, "dash-cold", 256);
        float[] q = new float[model.NumQueryHeads * model.HeadDim];
        q[0] = 1;
        await admin.AttendAsync("dash-pinned", 0, q, 1, model.NumQueryHeads, model.HeadDim);

        // A centroid plan asks for that index: it is built in the background (the answer is exact meanwhile).
        await admin.AttendAsync("dash-pinned", 0, q, 1, model.NumQueryHeads, model.HeadDim, plan: new Plan { Kind = PlanKind.CentroidTopK });

        // A context long enough that AUTO samples once its indexes are ready: its head statistics feed the heat map.
        Model headsModel = await admin.CreateModelAsync(HeadsModel("dash-heads-model", layers: 4));
        await LoadAutoContext(admin, headsModel, "dash-heads", queried: [0, 1, 2, 3], queriesPerLayer: 6);
        int recordedHeads = Enumerable.Range(0, 4 * 4).Count(i => _server!.Handle.Executor.HeadStatistics.Snapshot("dash-heads", i / 4, i % 4).Queries > 0);
        Assert.Equal(16, recordedHeads); // every head of every layer tried sampling at least once

        using ChromeDriver browser = StartBrowser();
        var wait = new WebDriverWait(browser, Patience);

        // The page re-renders its tables every 2 s: an element found just before may be replaced by the time it is used.
        wait.IgnoreExceptionTypes(typeof(StaleElementReferenceException), typeof(NoSuchElementException));
        browser.Navigate().GoToUrl(_server.HttpAddress + "/");

        // Keys are on: the page asks for the admin key before it shows anything.
        wait.Until(d => d.FindElement(By.Id("login")).Displayed);
        browser.FindElement(By.Id("key")).SendKeys(AdminKey);
        browser.FindElement(By.Id("login-btn")).Click();

        // Overview: the numbers are Admin.GetStats'.
        StatsResponse stats = await admin.GetStatsAsync();
        wait.Until(d => Text(d, "ov-contexts") == stats.Contexts.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(stats.Models.ToString(System.Globalization.CultureInfo.InvariantCulture), Text(browser, "ov-models"));
        Protocol.V1.TierStats cpu = stats.Tiers.Single(t => t.Name == "cpu");
        wait.Until(d => Text(d, "tier-cpu-blocks") == cpu.Blocks.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
        Shoot(browser, "overview");

        // Contexts: both appended contexts are listed; pin one from the page.
        Tab(browser, "contexts");
        wait.Until(d => d.FindElements(By.CssSelector("tr[data-id='dash-cold']")).Count == 1);
        Click(wait, "tr[data-id='dash-pinned'] .act-pin");
        Accept(wait);
        await Eventually(async () => (await admin.GetContextAsync("dash-pinned")).Pinned);
        wait.Until(d => d.FindElement(By.CssSelector("tr[data-id='dash-pinned'] .pinned")).Text == "pinned");
        Shoot(browser, "contexts");

        // Evict everything from the page: the pinned context keeps its blocks in the CPU tier, the other loses its full ones.
        Tab(browser, "overview");
        IWebElement target = browser.FindElement(By.Id("evict-target"));
        target.Clear();
        target.SendKeys("0");
        browser.FindElement(By.Id("evict-btn")).Click();
        Accept(wait);
        wait.Until(d => d.FindElement(By.Id("action-result")).Text.StartsWith("evicted", StringComparison.Ordinal));
        long cpuBlocksAfter = (await admin.GetStatsAsync()).Tiers.Single(t => t.Name == "cpu").Blocks;
        Assert.True(cpuBlocksAfter < cpu.Blocks, $"the page's evict demoted blocks ({cpu.Blocks} -> {cpuBlocksAfter} in the CPU tier)");

        // The context page shows where the blocks are: all of the pinned context's full blocks are still in the CPU tier.
        Tab(browser, "contexts");
        wait.Until(d => d.FindElements(By.CssSelector("a.ctx-link[data-id='dash-pinned']")).Count == 1);
        Click(wait, "a.ctx-link[data-id='dash-pinned']");
        wait.Until(d => d.FindElements(By.CssSelector("[data-testid='detail-id']")).Count == 1);
        foreach (IWebElement row in browser.FindElements(By.CssSelector("#ctx-detail tr[data-layer]")))
        {
            string[] cells = [.. row.FindElements(By.TagName("td")).Select(c => c.Text)];
            Assert.Equal(cells[2], cells[3]); // blocks == in CPU
        }

        // The context page lists its layer's centroid index once built (it refreshes on a click, so click until then).
        wait.Until(d =>
        {
            d.FindElement(By.CssSelector("a.ctx-link[data-id='dash-pinned']")).Click();
            return d.FindElements(By.CssSelector("#ctx-indexes td.index-state")).Any(c => c.Text == "ready");
        });

        // The 256-token context is too short for AUTO to sample: its heat map has cells but no data.
        wait.Until(d => d.FindElements(By.CssSelector("#ctx-heatmap rect.hm-cell")).Count == model.NumLayers * model.NumKvHeads);
        Assert.Empty(browser.FindElements(By.CssSelector("#ctx-heatmap rect.hm-cell.has-data")));

        // Start a build from the page: layer 1's LSH index, which no query asked for, appears in the catalog.
        IWebElement layerBox = browser.FindElement(By.Id("build-layer"));
        layerBox.Clear();
        layerBox.SendKeys("1");
        IWebElement specBox = browser.FindElement(By.Id("build-spec"));
        specBox.Clear();
        specBox.SendKeys("lsh");
        browser.FindElement(By.Id("build-btn")).Click();
        Accept(wait);
        wait.Until(d =>
        {
            d.FindElement(By.CssSelector("a.ctx-link[data-id='dash-pinned']")).Click();
            return d.FindElements(By.CssSelector("#ctx-indexes tr[data-index='dash-pinned/1/lsh'] td.index-state")).Any(c => c.Text == "ready");
        });

        // The heat map of the AUTO-queried context: 4 layers × 4 KV heads, every cell with data, in both views.
        Click(wait, "a.ctx-link[data-id='dash-heads']");
        wait.Until(d => d.FindElements(By.CssSelector("[data-testid='detail-id']")).Any(e => e.Text == "dash-heads"));
        wait.Until(d => d.FindElements(By.CssSelector("#ctx-heatmap rect.hm-cell")).Count == 16);
        Assert.Equal(recordedHeads, browser.FindElements(By.CssSelector("#ctx-heatmap rect.hm-cell.has-data")).Count);
        Assert.NotEmpty(browser.FindElements(By.CssSelector("#ctx-heatmap rect.hm-cell.has-mass")));
        Click(wait, "#ctx-detail button.hm-view[data-view='exact']");
        wait.Until(d => d.FindElement(By.Id("ctx-heatmap")).GetAttribute("data-view") == "exact");
        Assert.Equal("dash-heads", Text(browser, "detail-id"));
        Assert.Equal(recordedHeads, browser.FindElements(By.CssSelector("#ctx-heatmap rect.hm-cell.has-data")).Count);
        Shoot((ITakesScreenshot)browser.FindElement(By.Id("hm-panel")), "context-heads-exact");
        Click(wait, "#ctx-detail button.hm-view[data-view='mass']");
        wait.Until(d => d.FindElement(By.Id("ctx-heatmap")).GetAttribute("data-view") == "mass");

        // Hovering a cell reads its numbers out under the map. The page re-renders on its refresh timer (a new map, the
        // readout reset), so each try finds the cell again and hovers it.
        wait.Until(d =>
        {
            IWebElement cell = d.FindElement(By.CssSelector("#ctx-heatmap rect.hm-cell.has-mass"));
            ((IJavaScriptExecutor)d).ExecuteScript("arguments[0].scrollIntoView({block: 'center'})", cell);
            new OpenQA.Selenium.Interactions.Actions(d).MoveToElement(cell).Perform();
            return d.FindElement(By.Id("hm-readout")).Text.Contains("queries", StringComparison.Ordinal);
        });
        ((IJavaScriptExecutor)browser).ExecuteScript("document.getElementById('ctx-detail').scrollIntoView()");
        Shoot(browser, "context");

        // Delete the other one from the page: gRPC no longer finds it.
        Click(wait, "tr[data-id='dash-cold'] .act-delete");
        Accept(wait);
        await Eventually(async () =>
        {
            try
            {
                await admin.GetContextAsync("dash-cold");
                return false;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
                return true;
            }
        });
        wait.Until(d => d.FindElements(By.CssSelector("tr[data-id='dash-cold']")).Count == 0);

        // Indexes: the catalog's index of the pinned context's layer 0, ready, with its memory.
        Tab(browser, "indexes");
        wait.Until(d => d.FindElements(By.CssSelector("tr[data-index='dash-pinned/0/centroid:L2'] td.index-state")).Any(c => c.Text == "ready"));
        Shoot(browser, "indexes");

        // Recent queries: the attention call above, with its plan.
        Tab(browser, "queries");
        wait.Until(d => d.FindElements(By.CssSelector("#query-table td.plan")).Any(c => c.Text.Length > 0));
        Shoot(browser, "queries");

        Tab(browser, "tenants");
        wait.Until(d => d.FindElement(By.Id("tenant-note")).Text.Length > 0);
        Shoot(browser, "tenants");

        // The event stream: the appends stored blocks, the evict moved them.
        Tab(browser, "events");
        wait.Until(d => d.FindElements(By.CssSelector("#event-table tr")).Count > 0);
        Shoot(browser, "events");
    }

    [Fact]
    public async Task The_api_refuses_callers_without_the_admin_key_and_the_page_needs_no_network_but_kvdb()
    {
        using var http = new HttpClient();
        HttpResponseMessage anonymous = await http.GetAsync(_server!.HttpAddress + "/api/overview");
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, anonymous.StatusCode);

        using var request = new HttpRequestMessage(HttpMethod.Get, _server.HttpAddress + "/api/overview");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminKey);
        HttpResponseMessage ok = await http.SendAsync(request);
        Assert.Equal(System.Net.HttpStatusCode.OK, ok.StatusCode);
        using var doc = System.Text.Json.JsonDocument.Parse(await ok.Content.ReadAsStringAsync());
        Assert.True(doc.RootElement.GetProperty("durable").GetBoolean());
        Assert.Equal(0, doc.RootElement.GetProperty("contexts").GetInt32());

        // Actions on what does not exist or with a bad spec answer with the matching HTTP status and change nothing.
        using (var admin = new KvDbClient(_server.Address, AdminKey))
        {
            Model model = await admin.CreateModelAsync(TestModels.Small("dash-api"));
            await admin.CreateContextAsync(model.Name, id: "api-ctx");
        }

        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await Post(http, "/api/contexts/no-such/index?layer=0&spec=centroid:L2")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await Post(http, "/api/contexts/api-ctx/index?layer=0&spec=no-such-family")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await Post(http, "/api/contexts/api-ctx/index?layer=9&spec=lsh")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await Post(http, "/api/contexts/no-such/pin")).StatusCode);

        // Every asset is inline: no script, style or image is fetched from anywhere.
        string page = await http.GetStringAsync(_server.HttpAddress + "/");
        Assert.DoesNotContain("src=\"http", page, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("href=\"http", page, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("<link", page, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Heads_answers_the_optimizers_statistics_per_layer_and_kv_head_after_auto_queries()
    {
        using var admin = new KvDbClient(_server!.Address, AdminKey);
        Model model = await admin.CreateModelAsync(HeadsModel("heads-api", layers: 2));
        await LoadAutoContext(admin, model, "heads-ctx", queried: [0], queriesPerLayer: 4);

        using var http = new HttpClient();
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.GetAsync(_server.HttpAddress + "/api/contexts/heads-ctx/heads")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await Get(http, "/api/contexts/no-such/heads")).StatusCode);

        HttpResponseMessage ok = await Get(http, "/api/contexts/heads-ctx/heads");
        Assert.Equal(System.Net.HttpStatusCode.OK, ok.StatusCode);
        using var doc = JsonDocument.Parse(await ok.Content.ReadAsStringAsync());
        JsonElement root = doc.RootElement;
        Assert.Equal(("heads-ctx", 2, 4, false), (root.GetProperty("context").GetString(), root.GetProperty("numLayers").GetInt32(), root.GetProperty("numKvHeads").GetInt32(), root.GetProperty("truncated").GetBoolean()));
        JsonElement[] layers = [.. root.GetProperty("layers").EnumerateArray()];
        Assert.Equal(2, layers.Length);

        // Every cell is the optimizer's own numbers for that head.
        HeadStatistics statistics = _server.Handle.Executor.HeadStatistics;
        for (int layer = 0; layer < layers.Length; layer++)
        {
            Assert.Equal(layer, layers[layer].GetProperty("layer").GetInt32());
            JsonElement[] heads = [.. layers[layer].GetProperty("heads").EnumerateArray()];
            Assert.Equal(4, heads.Length);
            for (int h = 0; h < heads.Length; h++)
            {
                HeadStatisticsSnapshot s = statistics.Snapshot("heads-ctx", layer, h);
                JsonElement cell = heads[h];
                Assert.Equal(h, cell.GetProperty("kvHead").GetInt32());
                Assert.Equal((s.Queries, s.ExactAnswers, s.MassSamples, s.HeavyPerRow, s.ExactRun), (cell.GetProperty("queries").GetInt64(), cell.GetProperty("exactAnswers").GetInt64(), cell.GetProperty("massSamples").GetInt64(), cell.GetProperty("heavyPerRow").GetInt32(), cell.GetProperty("exactRun").GetInt32()));
                Assert.Equal(s.ExactShare, cell.GetProperty("exactShare").GetDouble());
                Assert.Equal(s.MassSamples > 0 ? s.MassExact : null, Nullable(cell.GetProperty("massExact")));
                Assert.Equal(s.Queries > 0 ? s.SampleShare : null, Nullable(cell.GetProperty("sampleShare")));
            }
        }

        // Layer 0 was queried after its index was ready: every head tried sampling and was recorded, and the peaked ones
        // measured their heavy-hitter mass. Layer 1 was never queried: no queries, no mass, no sample share.
        JsonElement[] queried = [.. layers[0].GetProperty("heads").EnumerateArray()];
        Assert.All(queried, c => Assert.InRange(c.GetProperty("queries").GetInt64(), 1, 4));
        double[] masses = [.. queried.Select(c => Nullable(c.GetProperty("massExact"))).OfType<double>()];
        Assert.NotEmpty(masses);
        Assert.All(masses, m => Assert.InRange(m, double.Epsilon, 1));
        Assert.All(queried, c => Assert.InRange(c.GetProperty("exactShare").GetDouble(), 0, 1));
        Assert.All(layers[1].GetProperty("heads").EnumerateArray(), c =>
            Assert.Equal((0L, JsonValueKind.Null, JsonValueKind.Null), (c.GetProperty("queries").GetInt64(), c.GetProperty("massExact").ValueKind, c.GetProperty("sampleShare").ValueKind)));
    }

    /// <summary>A bf16 model with 4 KV heads of 4 query heads each, the shape the heat-map contexts use.</summary>
    private static Model HeadsModel(string name, int layers) => new()
    {
        Name = name,
        NumLayers = layers,
        NumQueryHeads = 16,
        NumKvHeads = 4,
        HeadDim = 64,
        Dtype = DType.Bf16,
        BlockSize = 64,
    };

    /// <summary>A layer of the heat-map contexts: a diffuse head, a topical one (heavy-tailed) and two peaked ones.</summary>
    private static SyntheticWorkload HeadsWorkload(Model m, int layer) => new(new SyntheticWorkloadOptions
    {
        Tokens = HeadsTokens,
        NumKvHeads = m.NumKvHeads,
        NumQueryHeads = m.NumQueryHeads,
        HeadDim = m.HeadDim,
        DiffuseHeadFraction = 0.25,
        TopicalHeadFraction = 0.25,
        Layer = layer,
        Seed = 11,
    });

    /// <summary>
    /// Appends every layer of <paramref name="model"/> to a new context, then answers AUTO queries through gRPC on the
    /// <paramref name="queried"/> layers once their centroid index is ready (AUTO is exact and records nothing before),
    /// so the optimizer's head statistics are real. Every other query names a heavy-hitter budget, under which a
    /// diffuse head counts as needing exact attention at once.
    /// </summary>
    private async Task LoadAutoContext(KvDbClient admin, Model model, string id, int[] queried, int queriesPerLayer)
    {
        await admin.CreateContextAsync(model.Name, id: id);
        var ids = new int[HeadsTokens];
        HeadsWorkload(model, 0).FillTokenIds(0, ids);
        using (KvAppendStream stream = admin.OpenAppend(id))
        {
            for (int layer = 0; layer < model.NumLayers; layer++)
            {
                SyntheticWorkload w = HeadsWorkload(model, layer);
                await stream.WriteLayerAsync(layer, ids, w.KeyBytes(KvDType.BF16, 0, HeadsTokens), w.ValueBytes(KvDType.BF16, 0, HeadsTokens), KvDType.BF16, model.NumKvHeads, model.HeadDim, chunkTokens: 2048);
            }

            await stream.CompleteAsync();
        }

        var auto = new Plan { Kind = PlanKind.Auto };
        foreach (int layer in queried)
        {
            // The first AUTO query of a layer asks for its centroid index (answered exactly meanwhile).
            await admin.AttendAsync(id, layer, HeadsWorkload(model, layer).Queries(1, 1), 1, model.NumQueryHeads, model.HeadDim, plan: auto);
        }

        foreach (int layer in queried)
        {
            await _server!.Handle.Executor.Indexes.WhenIdle(id, layer, QueryPlanner.AutoHeavySpec);
            SyntheticWorkload w = HeadsWorkload(model, layer);
            for (int i = 0; i < queriesPerLayer; i++)
            {
                Plan plan = i % 2 == 0 ? auto : new Plan { Kind = PlanKind.Auto, Budget = 64 };
                AttentionPartial answer = await admin.AttendAsync(id, layer, w.Queries(1, (ulong)(100 + i)), 1, model.NumQueryHeads, model.HeadDim, plan: plan);
                Assert.Equal(QueryPlanner.AutoName, answer.Stats!.Plan);
            }
        }
    }

    private static double? Nullable(JsonElement e) => e.ValueKind == JsonValueKind.Null ? null : e.GetDouble();

    private async Task<HttpResponseMessage> Get(HttpClient http, string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, _server!.HttpAddress + path);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminKey);
        return await http.SendAsync(request);
    }

    private async Task<HttpResponseMessage> Post(HttpClient http, string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _server!.HttpAddress + path);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminKey);
        return await http.SendAsync(request);
    }

    private static ChromeDriver StartBrowser()
    {
        var options = new ChromeOptions { BinaryLocation = Chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000", "--no-first-run");
        ChromeDriverService service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }

    private static string Text(IWebDriver d, string testId) => d.FindElement(By.CssSelector($"[data-testid='{testId}']")).Text;

    private static void Click(WebDriverWait wait, string css) => wait.Until(d =>
    {
        d.FindElement(By.CssSelector(css)).Click();
        return true;
    });

    private static void Tab(IWebDriver d, string tab) => d.FindElement(By.CssSelector($"nav button[data-tab='{tab}']")).Click();

    private static void Accept(WebDriverWait wait) => wait.Until(d =>
    {
        try
        {
            d.SwitchTo().Alert().Accept();
            return true;
        }
        catch (NoAlertPresentException)
        {
            return false;
        }
    });

    private static async Task Eventually(Func<Task<bool>> condition)
    {
        DateTime deadline = DateTime.UtcNow + Patience;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the page's action did not take effect in time");
            await Task.Delay(100);
        }
    }

    private static void Shoot(ITakesScreenshot browser, string page)
    {
        string dir = Environment.GetEnvironmentVariable("KVDB_DASHBOARD_SHOTS") ?? Path.Combine(AppContext.BaseDirectory, "dashboard-screenshots");
        Directory.CreateDirectory(dir);
        browser.GetScreenshot().SaveAsFile(Path.Combine(dir, page + ".png"));
    }
}

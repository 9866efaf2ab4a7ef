using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
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
        Shoot(browser, "context");

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

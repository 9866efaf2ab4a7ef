using System.Reflection;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Planning;
using KvDb.Server.Observability;
using KvDb.Server.Security;
using KvDb.Store;
using KvDb.Store.Events;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace KvDb.Server.Dashboard;

/// <summary>
/// The admin dashboard on the HTTP endpoint: the page at <c>/</c> (one self-contained HTML file: no CDN, works
/// offline) and the JSON calls under <c>/api</c> it reads and acts through. With keys configured every <c>/api</c>
/// call needs <c>Authorization: Bearer &lt;admin key&gt;</c> (the page asks for the key and keeps it in the browser
/// session); the page itself holds no data. Actions go through the same store calls as the gRPC ones.
/// </summary>
public static class DashboardApi
{
    /// <summary>The most events one poll of the page gets (the newest).</summary>
    private const int EventPage = 500;

    /// <summary>Maps the page and the API.</summary>
    public static void Map(WebApplication app, IKvStore store, Authenticator authenticator, RecentCalls calls, TenantQuotas quotas, AttentionExecutor executor)
    {
        KvDb.Index.Catalog.LayerIndexCatalog indexes = executor.Indexes;
        string page = LoadPage();
        app.MapGet("/", () => Results.Content(page, "text/html; charset=utf-8"));
        RouteGroupBuilder api = app.MapGroup("/api");
        api.AddEndpointFilter(async (context, next) =>
            authenticator.Required && !HttpEndpoints.IsAdmin(context.HttpContext, authenticator)
                ? Results.Json(new { error = "send Authorization: Bearer <admin key>" }, statusCode: StatusCodes.Status401Unauthorized)
                : await next(context).ConfigureAwait(false));

        api.MapGet("/overview", () => Results.Json(Overview(store, calls)));
        api.MapGet("/calls", (int? limit) => Results.Json(calls.Newest(Math.Clamp(limit ?? 100, 1, 1000))));
        api.MapGet("/contexts", (string? q, string? after, int? size) => Guarded(() => Results.Json(Contexts(store, q ?? string.Empty, after, Math.Clamp(size ?? 25, 1, 500)))));
        api.MapGet("/contexts/{id}", (string id) => Guarded(() => Results.Json(new
        {
            context = store.GetContext(id),
            layers = store is KvStore k ? k.DescribeTiers(id) : [],
            indexes = Indexes(indexes, id),
        })));
        api.MapGet("/contexts/{id}/heads", (string id) => Guarded(() => Results.Json(Heads(id, executor.DescribeHeads(id)))));
        api.MapPost("/contexts/{id}/index", (string id, int layer, string spec) => Guarded(() =>
        {
            ContextInfo info = store.GetContext(id);
            if ((uint)layer >= (uint)info.LayerTokens.Count)
            {
                throw KvDbException.Invalid($"layer must be in [0, {info.LayerTokens.Count}) for context \"{id}\", got {layer}");
            }

            try
            {
                // Checks the spec the way a build would, before anything starts.
                KvDb.Index.IndexFactory.Create(spec, 8).Dispose();
            }
            catch (ArgumentException e)
            {
                throw KvDbException.Invalid($"spec \"{spec}\" is not an index spec ({e.Message}); send one like {string.Join(", ", KvDb.Index.IndexFactory.DefaultSpecs)}");
            }

            // The build runs in the background like one a query asks for; the snapshot only pins the layer while it is queued.
            using LayerSnapshot snapshot = store.OpenLayer(id, layer);
            indexes.RequestUpdate(id, snapshot, spec);
            return Results.Json(new { requested = true, layer, spec });
        }));
        api.MapGet("/indexes", () => Results.Json(new { counters = indexes.Counters, indexes = Indexes(indexes, string.Empty) }));
        api.MapPost("/contexts/{id}/pin", (string id) => Guarded(() => Results.Json(store.UpdateContext(id, null, true))));
        api.MapPost("/contexts/{id}/unpin", (string id) => Guarded(() => Results.Json(store.UpdateContext(id, null, false))));
        api.MapPost("/contexts/{id}/ttl", (string id, long seconds) => Guarded(() => Results.Json(store.UpdateContext(id, seconds, null))));
        api.MapDelete("/contexts/{id}", (string id) => Guarded(() => store.DeleteContext(id) ? Results.Json(new { deleted = true }) : throw KvDbException.NotFound($"context \"{id}\" does not exist")));
        api.MapPost("/evict", (long target) => Guarded(() =>
        {
            (long blocks, long bytes) = store.Evict(target);
            return Results.Json(new { blocks, bytes });
        }));
        api.MapPost("/checkpoint", () => Guarded(() => Results.Json(store.Checkpoint())));
        api.MapGet("/tenants", () => Results.Json(Tenants(authenticator.Tenants, quotas)));
        api.MapGet("/events", (long? after) => Results.Json(Events(store.Events, after ?? 0)));
    }

    /// <summary>Runs an action, answering a store error as JSON with the HTTP status that matches its code.</summary>
    private static IResult Guarded(Func<IResult> action)
    {
        try
        {
            return action();
        }
        catch (KvDbException e)
        {
            int status = e.Code switch
            {
                KvDbErrorCode.NotFound => StatusCodes.Status404NotFound,
                KvDbErrorCode.InvalidArgument => StatusCodes.Status400BadRequest,
                KvDbErrorCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
                KvDbErrorCode.FailedPrecondition => StatusCodes.Status409Conflict,
                _ => StatusCodes.Status500InternalServerError,
            };
            return Results.Json(new { error = e.Message, code = e.Code.ToString() }, statusCode: status);
        }
    }

    private static object Overview(IKvStore store, RecentCalls calls)
    {
        StoreStats s = store.GetStats();
        List<RecentCall> recent = calls.Newest(1000);
        var micros = new List<double>(recent.Count);
        var errors = new List<RecentCall>();
        foreach (RecentCall c in recent)
        {
            micros.Add(c.Micros);
            if (c.Code != "OK" && errors.Count < 10)
            {
                errors.Add(c);
            }
        }

        micros.Sort();
        return new
        {
            s.Models,
            s.Contexts,
            s.Blocks,
            s.CpuBytes,
            s.CpuBudgetBytes,
            s.LogicalBytes,
            s.SharedBlocks,
            s.DedupeHits,
            s.Demotions,
            s.ExpiredContexts,
            s.CorruptRecords,
            s.WalBytes,
            s.Durable,
            PinnedBytes = store is KvStore k ? k.PinnedBytes : 0,
            Tiers = s.Tiers,
            Calls = calls.Total,
            LatencyP50Micros = Percentile(micros, 0.50),
            LatencyP99Micros = Percentile(micros, 0.99),
            RecentErrors = errors,
            UnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        };
    }

    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Floor(p * sorted.Count))];

    /// <summary>A page of contexts; with a search term, the matches among the first 10,000 contexts (ids or namespaces containing it).</summary>
    private static object Contexts(IKvStore store, string q, string? after, int size)
    {
        if (q.Length == 0)
        {
            ContextPage page = store.ListContexts(size, after);
            return new { contexts = page.Contexts, next = page.NextPageToken };
        }

        var matches = new List<ContextInfo>();
        string? token = after;
        int scanned = 0;
        string next = string.Empty;
        while (scanned < 10_000)
        {
            ContextPage page = store.ListContexts(500, token);
            foreach (ContextInfo c in page.Contexts)
            {
                scanned++;
                if (c.Id.Contains(q, StringComparison.OrdinalIgnoreCase) || c.Namespace.Contains(q, StringComparison.OrdinalIgnoreCase))
                {
                    matches.Add(c);
                    if (matches.Count == size)
                    {
                        return new { contexts = matches, next = c.Id };
                    }
                }
            }

            if (page.NextPageToken.Length == 0)
            {
                break;
            }

            token = page.NextPageToken;
        }

        return new { contexts = matches, next };
    }

    private static List<object> Indexes(KvDb.Index.Catalog.LayerIndexCatalog catalog, string contextId)
    {
        var list = new List<object>();
        foreach ((string context, KvDb.Index.Catalog.IndexStatus s, long bytes) in catalog.List(contextId))
        {
            list.Add(new
            {
                context,
                s.Layer,
                s.Spec,
                state = s.State.ToString().ToLowerInvariant(),
                s.IndexedTokens,
                s.BaseTokens,
                baseOrigin = s.BaseOrigin.ToString().ToLowerInvariant(),
                s.SuffixTokens,
                memoryBytes = bytes,
                error = s.Error ?? string.Empty,
            });
        }

        return list;
    }

    /// <summary>
    /// AUTO's statistics of a context as a layers × KV heads matrix (every layer of the model, every KV head): per head
    /// the queries recorded, how many needed exact attention and their share, the smoothed heavy-hitter mass (null
    /// until an answer measured one), the smoothed sample share of the residual (null before any query), the heavy
    /// hitters per row its next query names, and the current run of exact answers. Past
    /// <see cref="HeadStatistics.MaxDescribedHeads"/> heads the matrix stops at the last whole layer (truncated).
    /// </summary>
    private static object Heads(string id, ContextHeadReport report)
    {
        var byLayer = new Dictionary<int, LayerHeadStatistics>();
        foreach (LayerHeadStatistics l in report.Statistics.Layers)
        {
            byLayer[l.Layer] = l;
        }

        bool truncated = (long)report.NumLayers * report.NumKvHeads > HeadStatistics.MaxDescribedHeads || report.Statistics.Truncated;
        int layers = truncated ? HeadStatistics.MaxDescribedHeads / Math.Max(1, report.NumKvHeads) : report.NumLayers;
        var matrix = new List<object>(layers);
        for (int layer = 0; layer < layers; layer++)
        {
            var heads = new object[report.NumKvHeads];
            byLayer.TryGetValue(layer, out LayerHeadStatistics? l);
            for (int h = 0; h < heads.Length; h++)
            {
                HeadStatisticsSnapshot s = l is not null && h < l.Heads.Count ? l.Heads[h] : default;
                heads[h] = new
                {
                    kvHead = h,
                    queries = s.Queries,
                    exactAnswers = s.ExactAnswers,
                    exactShare = s.ExactShare,
                    massExact = s.MassSamples > 0 ? s.MassExact : (double?)null,
                    massSamples = s.MassSamples,
                    sampleShare = s.Queries > 0 ? s.SampleShare : (double?)null,
                    heavyPerRow = s.HeavyPerRow,
                    exactRun = s.ExactRun,
                };
            }

            matrix.Add(new { layer, heads });
        }

        return new { context = id, numLayers = report.NumLayers, numKvHeads = report.NumKvHeads, truncated, layers = matrix };
    }

    /// <summary>
    /// The hub's kept events after <paramref name="after"/>, at most the newest <see cref="EventPage"/>: the page polls
    /// with the last sequence it saw. One it cannot have seen (a sequence of a previous server process) starts over.
    /// </summary>
    private static List<KvEvent> Events(KvEventHub hub, long after)
    {
        long last = hub.LastSequence;
        long from = after > last ? 0 : after;
        return hub.Since(Math.Max(from, last - EventPage), out _);
    }

    private static object Tenants(TenantRegistry registry, TenantQuotas quotas)
    {
        var list = new List<object>();
        foreach (TenantRecord t in registry.List())
        {
            (long bytes, long contexts, int streams) = quotas.Usage(t.Name);
            list.Add(new { t.Name, t.Admin, t.Quota, Usage = new { bytes, contexts, streams, cpuBytes = quotas.ResidentBytes(t.Name) } });
        }

        return list;
    }

    private static string LoadPage()
    {
        using Stream stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("KvDb.Server.Dashboard.dashboard.html")
            ?? throw new InvalidOperationException("the dashboard page is not embedded in the server assembly");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

using System.Globalization;
using System.Text.Json;
using KvDb.Index;
using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// Suite "index": every index family on the synthetic workload (2 KV heads × 4 query heads, d = 128,
/// 16 decode queries per query head, 512 sample queries per query head for the query-guided families),
/// one JSON line per (family, budget, ctx): scanned_frac (key-sized vectors scored, summaries included,
/// over ctx), attended_frac, recall (top-k, k = 1% of ctx), mass (softmax mass of the candidates),
/// needles (share of (query, planted needle) pairs found), build_us_per_1k, index_bytes. Family
/// "lsh-sampling" prints one line per KV head and variant (LSH heavy hitters + sample, pure sample) with the
/// rel-L2 error of the remote partial (indexed context without the 256-token local window) and of its merge
/// with the exact window. Options: --ctx 32768,131072 --families block,centroid,lsh,graph,faiss,lsh-sampling
/// --spec SPEC (replaces the default spec of SPEC's family, e.g. --spec graph:R=32) --profile peaked|topical (topical:
/// both KV heads are heavy-tailed topic heads, where softmax mass spreads over tens to thousands of tokens, instead
/// of the default's needle-dominated heads; JSON lines then carry "profile":"topical").
/// </summary>
public static class IndexSuite
{
    /// <summary>Runs the suite and prints the JSON lines to stdout (progress to stderr).</summary>
    public static void Run(string[] args)
    {
        int[] contexts = [32 * 1024, 128 * 1024];
        string[] families = ["block", "centroid", "lsh", "graph", "faiss", "lsh-sampling"];
        string? specOverride = null;
        string profile = "peaked";
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--ctx":
                    contexts = args[i + 1].Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                    break;
                case "--families":
                    families = args[i + 1].Split(',');
                    break;
                case "--spec":
                    specOverride = args[i + 1];
                    break;
                case "--profile":
                    profile = args[i + 1] is "peaked" or "topical" ? args[i + 1] : throw new ArgumentException($"unknown profile {args[i + 1]}; use peaked or topical");
                    break;
                default:
                    throw new ArgumentException($"unknown option {args[i]}; use --ctx N[,N], --families a,b, --spec SPEC, --profile peaked|topical");
            }
        }

        foreach (int ctx in contexts)
        {
            Console.Error.WriteLine($"index suite: generating {ctx} tokens");
            var harness = new IndexQualityHarness(
                profile == "topical"
                    ? new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 2, NumQueryHeads = 8, DiffuseHeadFraction = 0, TopicalHeadFraction = 1 }
                    : new SyntheticWorkloadOptions { Tokens = ctx, NumKvHeads = 2, NumQueryHeads = 8 },
                queries: 16,
                sampleQueries: 512);
            int k = harness.TopK;
            if (families.Contains("lsh-sampling"))
            {
                Sampling(harness, ctx, profile);
            }

            foreach ((string family, string planned, SearchParameters[] sweep) in Plan(families.Where(f => f != "lsh-sampling").ToArray(), ctx, k))
            {
                string spec = specOverride is not null && IndexSpec.Parse(specOverride).Family == family ? specOverride : planned;
                if (family == "faiss" && !FaissIndex.IsAvailable)
                {
                    Console.Error.WriteLine("index suite: libkvfaiss.so not built (src/Index/native/build.sh); skipping faiss");
                    continue;
                }

                Console.Error.WriteLine($"index suite: {spec} @ {ctx}");
                foreach (QualityReport r in harness.Evaluate(spec, sweep))
                {
                    Console.WriteLine(JsonSerializer.Serialize(new
                    {
                        suite = "index",
                        profile,
                        family,
                        spec = r.Spec,
                        ctx,
                        budget = r.Parameters.Budget,
                        scan_budget = r.Parameters.ScanBudget,
                        effort = r.Parameters.Effort,
                        scanned_frac = Math.Round(r.ScannedFraction, 5),
                        attended_frac = Math.Round(r.AttendedFraction, 5),
                        recall = Math.Round(r.Recall, 4),
                        mass = Math.Round(r.Mass, 4),
                        needles = Math.Round(r.NeedlesFound, 4),
                        build_us_per_1k = Math.Round(r.BuildMicrosPer1K, 0),
                        index_bytes = r.MemoryBytes,
                    }));
                }
            }
        }
    }

    /// <summary>LSH sampling per KV head: LshSamplingPlan's split (query-shaped LSH top 1% exact, plain-SimHash sample of the rest) and pure sampling.</summary>
    private static void Sampling(IndexQualityHarness harness, int ctx, string profile)
    {
        const int window = 256;
        foreach (int kv in harness.KvHeads)
        {
            foreach (string? heavy in new[] { "lsh", null })
            {
                Console.Error.WriteLine($"index suite: lsh-sampling heavy={heavy ?? "none"} head {kv} @ {ctx}");
                SamplingReport r = harness.MeasureSampling(kv, heavy, "lsh:K=10,L=150,Q=0,S=7", heavy is null ? 0 : 0.01, window);
                Console.WriteLine(JsonSerializer.Serialize(new
                {
                    suite = "index",
                    profile,
                    family = "lsh-sampling",
                    spec = r.SampleSpec,
                    heavy = r.HeavySpec ?? "none",
                    heavy_frac = heavy is null ? 0 : 0.01,
                    ctx,
                    kv_head = kv,
                    window,
                    touched_frac = Math.Round(r.TouchedFraction, 5),
                    remote_rel_l2 = Math.Round(r.RemoteRelL2, 5),
                    remote_max_rel_l2 = Math.Round(r.RemoteMaxRelL2, 5),
                    merged_rel_l2 = Math.Round(r.MergedRelL2, 5),
                    merged_max_rel_l2 = Math.Round(r.MergedMaxRelL2, 5),
                    lse_err = Math.Round(r.LseError, 5),
                }));
            }
        }
    }

    private static IEnumerable<(string Family, string Spec, SearchParameters[] Sweep)> Plan(string[] families, int ctx, int k)
    {
        foreach (string family in families)
        {
            switch (family)
            {
                case "block":
                    yield return (family, "block", [new(k), new(2 * k), new(5 * k)]);
                    break;
                case "centroid":
                    yield return (family, "centroid:L2", [new(k, 2 * k), new(k, 4 * k), new(2 * k, 4 * k)]);
                    break;
                case "lsh":
                    yield return (family, "lsh", [new(k), new(2 * k), new(4 * k)]);
                    break;
                case "graph":
                    yield return (family, "graph", [new(k, 2 * k), new(k, 3 * k), new(k, 4 * k), new(k, 6 * k)]);
                    break;
                case "faiss":
                    yield return (family, "faiss:HNSW16", [new(k, 0, 2 * k), new(k, 0, 4 * k), new(k, 0, 8 * k)]);
                    yield return (family, "faiss:IVF", [new(k, 0, 4), new(k, 0, 16), new(k, 0, 64)]);
                    if (ctx <= 32 * 1024)
                    {
                        yield return (family, "faiss:HNSW32", [new(k, 0, 2 * k), new(k, 0, 4 * k), new(k, 0, 8 * k)]);
                    }

                    break;
                default:
                    throw new ArgumentException($"unknown family {family}; known: block, centroid, lsh, graph, faiss, lsh-sampling");
            }
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using KvDb.Client;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// The query suite's <c>real</c> workload: a real-attention set (by default the committed one in eval/real-attention, a
/// small transformer trained here; --real-manifest names another, e.g. a locally regenerated 16K set), every layer, as
/// an engine would use KvDb. Tokens [0, T − W) of a held-out sequence are stored through the gRPC server (the model's
/// shape from the manifest, float16 as dumped, the layer's prefill queries as sample queries); the last W tokens stay
/// in the engine's local window. Each decode query at position p (the last 64 of the sequence, all at or after T − W)
/// is answered by KvDb over the stored tokens, the engine attends its window
/// [T − W, p] itself (f64 here), and the two partials are merged by LSE (<see cref="AttentionPartial.Merge"/>). Quality
/// is against the f64 causal softmax over all tokens 0..p: mass = true softmax mass of the tokens KvDb returned as
/// attended (return_selection: for AUTO the heavy hitters and the sample) plus the window's, rel_l2 = relative L2 error
/// of the merged output. One JSON line per layer and plan, EXACT measured first for the speedup.
/// </summary>
internal static class RealQuery
{
    private const string ModelName = "real-attention";
    private static readonly Regex BuildingIndex = new(@"for layer \d+ is being built", RegexOptions.CultureInvariant);

    /// <summary>Runs the workload: --real-manifest PATH (the committed set), --window W (64), --sequence S (every dumped one), --queries N (all decode queries), --plans, --epsilon.</summary>
    public static async Task RunAsync(string[] args, string[] plans, double epsilon)
    {
        // Longer sets (e.g. the 16K one) are too large for the repository and are regenerated locally, so they are named by path.
        string manifest = SuiteOptions.Get(args, "real-manifest", "");
        if (manifest.Length == 0)
        {
            manifest = RealAttentionSet.Locate() ?? throw new FileNotFoundException("eval/real-attention/manifest.json not found above " + AppContext.BaseDirectory);
        }

        RealAttentionSet set = RealAttentionSet.Load(manifest);
        int window = (int)SuiteOptions.Get(args, "window", 64);
        int queries = (int)Math.Min(SuiteOptions.Get(args, "queries", set.DecodePositions.Count), set.DecodePositions.Count);
        string only = SuiteOptions.Get(args, "sequence", "");
        int ctx = set.Tokens - window;
        if (window < 1 || ctx < 1 || set.DecodePositions[0] < ctx)
        {
            throw new ArgumentException($"--window {window}: the decode queries (positions {set.DecodePositions[0]}..{set.DecodePositions[^1]}) must all come at or after the stored prefix [0, {ctx})");
        }

        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CpuBudgetBytes = 2L << 30 }).ConfigureAwait(false);
        using var client = new KvDbClient(server.Address);
        StatsResponse stats = await client.GetStatsAsync().ConfigureAwait(false);
        string simd = stats.QueryCosts.Simd;
        Console.Error.WriteLine($"query: calibrated stream {stats.QueryCosts.StreamBytesPerSecond / 1e9:F1} GB/s, gather {stats.QueryCosts.GatherBytesPerSecond / 1e9:F1} GB/s, simd {simd}");
        Console.Error.WriteLine($"query: real: {manifest}");
        Console.Error.WriteLine($"query: real: {set.Layers} layers, {set.Heads} query heads, {set.KvHeads} KV heads, d = {set.HeadDim}, {set.Tokens} tokens; stored {ctx}, window {window}; train loss {set.TrainBitsPerByte} bits/byte");
        bool first = true;
        await client.CreateModelAsync(new Model { Name = ModelName, NumLayers = set.Layers, NumQueryHeads = set.Heads, NumKvHeads = set.KvHeads, HeadDim = set.HeadDim, Dtype = DType.F16 }).ConfigureAwait(false);
        foreach (RealAttentionSequence sequence in set.Sequences.Where(s => s.Dumped && (only.Length == 0 || s.Index == int.Parse(only, CultureInfo.InvariantCulture))))
        {
            var layers = new RealAttentionLayer[set.Layers];
            for (int l = 0; l < set.Layers; l++)
            {
                layers[l] = set.Layer(sequence.Index, l);
            }

            string id = await LoadAsync(client, set, sequence.Index, layers, ctx).ConfigureAwait(false);
            await SettleAsync(client, id, set, layers, plans, epsilon).ConfigureAwait(false);
            for (int l = 0; l < set.Layers; l++)
            {
                var layer = new RealLayer(set, layers[l], ctx, queries);
                double exactP50 = 0;
                double exactRtt = 0;
                foreach (string plan in plans)
                {
                    Result r = await MeasureAsync(client, id, layer, plan, epsilon, first).ConfigureAwait(false);
                    first = false;
                    if (plan == "exact")
                    {
                        (exactP50, exactRtt) = (r.P50, r.RttP50);
                    }

                    RealAttentionLayerSummary summary = set.Summary(sequence.Index)[l];
                    new JsonLine()
                        .Add("suite", "query")
                        .Add("workload", "real")
                        .Add("plan", plan)
                        .Add("server_plan", r.ServerPlan)
                        .Add("sequence", sequence.Index)
                        .Add("layer", l)
                        .Add("ctx", ctx)
                        .Add("window", window)
                        .Add("top95_tokens", summary.DecodeMeanTop95Tokens, 1)
                        .Add("epsilon", epsilon, 3)
                        .Add("attended_frac", r.Attended / r.Pairs, 4)
                        .Add("sampled_frac", r.Sampled / r.Pairs, 4)
                        .Add("exact_head_frac", (double)r.ExactHeads / r.Pairs, 3)
                        .Add("mass", r.Mass / r.Pairs, 4)
                        .Add("mass_min", r.MassMin, 4)
                        .Add("local_mass", r.LocalMass / r.Pairs, 4)
                        .Add("kvdb_mass_est", r.MassEstimate / r.Pairs, 4)
                        .Add("rel_l2", r.Error / r.Pairs, 5)
                        .Add("rel_l2_max", r.ErrorMax, 5)
                        .Add("p_violation", (double)r.Violations / r.Pairs, 4)
                        .Add("pairs", r.Pairs)
                        .Add("p50_us", r.P50, 0)
                        .Add("p99_us", Percentile.Of(r.Server, 0.99), 0)
                        .Add("rtt_p50_us", r.RttP50, 0)
                        .Add("speedup_vs_exact", exactP50 > 0 ? exactP50 / r.P50 : double.NaN, 2)
                        .Add("rtt_speedup_vs_exact", exactRtt > 0 ? exactRtt / r.RttP50 : double.NaN, 2)
                        .Add("simd", simd)
                        .WriteTo(Console.Out);
                }
            }

            await client.DeleteContextAsync(id).ConfigureAwait(false);
        }
    }

    /// <summary>Stores tokens [0, ctx) of every layer (float16, as dumped) with the layer's prefill queries as sample queries; returns the context id.</summary>
    private static async Task<string> LoadAsync(KvDbClient client, RealAttentionSet set, int sequence, RealAttentionLayer[] layers, int ctx)
    {
        Context context = await client.CreateContextAsync(ModelName, ns: "real").ConfigureAwait(false);
        int[] ids = set.TokenIds(sequence).Take(ctx).Select(b => (int)b).ToArray();
        int rowFloats = set.KvHeads * set.HeadDim;
        using KvAppendStream stream = client.OpenAppend(context.Id);
        foreach (RealAttentionLayer layer in layers)
        {
            await stream.WriteSampleQueriesAsync(layer.Layer, layer.PrefillQueries, set.Heads, set.HeadDim).ConfigureAwait(false);
            byte[] k = ElementConversion.FromSingle(KvDType.F16, layer.Keys.AsSpan(0, ctx * rowFloats));
            byte[] v = ElementConversion.FromSingle(KvDType.F16, layer.Values.AsSpan(0, ctx * rowFloats));
            await stream.WriteLayerAsync(layer.Layer, ids, k, v, KvDType.F16, set.KvHeads, set.HeadDim).ConfigureAwait(false);
        }

        await stream.CompleteAsync().ConfigureAwait(false);
        Console.Error.WriteLine($"query: real: sequence {sequence} stored, {set.Layers} layers × {ctx} tokens");
        return context.Id;
    }

    /// <summary>
    /// Before any figure: builds every layer's indexes for the sparse plans asked for (a build takes the CPUs it runs on)
    /// and runs a few seconds of EXACT over all layers, so no layer is timed while another one's background work runs.
    /// </summary>
    private static async Task SettleAsync(KvDbClient client, string id, RealAttentionSet set, RealAttentionLayer[] layers, string[] plans, double epsilon)
    {
        var wait = Stopwatch.StartNew();
        foreach (string planName in plans.Where(p => p != "exact"))
        {
            Plan plan = PlanFor(planName, epsilon);
            for (int l = 0; l < set.Layers; l++)
            {
                float[] q = layers[l].DecodeQueries.AsSpan(0, set.Heads * set.HeadDim).ToArray();
                while (wait.Elapsed < TimeSpan.FromMinutes(10))
                {
                    AttendResponse r = await client.Attention.AttendAsync(KvDbClient.BuildAttend(id, l, q, 1, set.Heads, set.HeadDim, plan: plan)).ConfigureAwait(false);
                    if (r.Stats.Plan != "exact" || !BuildingIndex.IsMatch(r.Stats.Explain))
                    {
                        break;
                    }

                    await Task.Delay(250).ConfigureAwait(false);
                }
            }
        }

        var warm = Stopwatch.StartNew();
        for (int i = 0; warm.Elapsed < TimeSpan.FromSeconds(3); i++)
        {
            int l = i % set.Layers;
            float[] q = layers[l].DecodeQueries.AsSpan(0, set.Heads * set.HeadDim).ToArray();
            await client.Attention.AttendAsync(KvDbClient.BuildAttend(id, l, q, 1, set.Heads, set.HeadDim, plan: new Plan { Kind = PlanKind.Exact })).ConfigureAwait(false);
        }

        Console.Error.WriteLine($"query: real: indexes built and warmed in {wait.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>The wire plan a suite's plan name stands for (shared by the synthetic and real query suites).</summary>
    internal static Plan PlanFor(string planName, double epsilon) => planName switch
    {
        "exact" => new Plan { Kind = PlanKind.Exact },
        "auto" => new Plan { Kind = PlanKind.Auto, Epsilon = epsilon, Delta = 0.05 },
        "block" => new Plan { Kind = PlanKind.BlockTopK },
        "centroid" => new Plan { Kind = PlanKind.CentroidTopK },
        "lsh" => new Plan { Kind = PlanKind.LshTopK },
        "graph" => new Plan { Kind = PlanKind.AnnTopK },
        "lsh-sampling" => new Plan { Kind = PlanKind.LshSampling },
        "dipr" => new Plan { Kind = PlanKind.Dipr },
        _ => throw new ArgumentException($"unknown plan \"{planName}\""),
    };

    private static async Task<Result> MeasureAsync(KvDbClient client, string id, RealLayer layer, string planName, double epsilon, bool first)
    {
        Plan plan = PlanFor(planName, epsilon);
        int heads = layer.Set.Heads;
        int d = layer.Set.HeadDim;
        int l = layer.Data.Layer;

        // Until the plan's index is ready the server answers exactly; wait (bounded) so the figures are the plan's.
        var wait = Stopwatch.StartNew();
        while (planName != "exact" && wait.Elapsed < TimeSpan.FromMinutes(10))
        {
            AttendResponse r = await client.Attention.AttendAsync(KvDbClient.BuildAttend(id, l, layer.Query(0), 1, heads, d, plan: plan)).ConfigureAwait(false);
            // Only an index status says "index \"spec\" for layer L is being built" (AUTO on a short layer answers exactly by choice).
            if (r.Stats.Plan != "exact" || !BuildingIndex.IsMatch(r.Stats.Explain))
            {
                break;
            }

            Console.Error.WriteLine($"query: real layer {l} {planName}: waiting for its index ({wait.Elapsed.TotalSeconds:F0} s)");
            await Task.Delay(1000).ConfigureAwait(false);
        }

        // Warm up a second (the runtime re-optimizes hot methods after ~30 calls), longer before the first figures.
        var warm = Stopwatch.StartNew();
        TimeSpan warmFor = TimeSpan.FromSeconds(first ? 2 : 1);
        for (int i = 0; i < 8 || warm.Elapsed < warmFor; i++)
        {
            await client.Attention.AttendAsync(KvDbClient.BuildAttend(id, l, layer.Query(i % layer.Count), 1, heads, d, plan: plan)).ConfigureAwait(false);
        }

        var m = new Result(layer.Count);
        for (int i = 0; i < layer.Count; i++)
        {
            AttendRequest request = KvDbClient.BuildAttend(id, l, layer.Query(i), 1, heads, d, plan: plan);
            long t0 = Stopwatch.GetTimestamp();
            AttendResponse timed = await client.Attention.AttendAsync(request).ConfigureAwait(false);
            m.Rtt[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            m.Server[i] = timed.Stats.ServerMicros;
            m.ServerPlan = timed.Stats.Plan;

            // The quality pass asks for the selection too (not timed: returning positions costs the server time).
            request.ReturnSelection = true;
            AttendResponse checkedResponse = await client.Attention.AttendAsync(request).ConfigureAwait(false);
            layer.Score(i, checkedResponse, epsilon, m);
            if (i == 0 && planName != "exact")
            {
                Console.Error.WriteLine($"query: real layer {l} {planName}: {timed.Stats.Explain}");
            }

            Console.Error.WriteLine($"query: real layer {l} {planName} {i + 1}/{layer.Count}: server {timed.Stats.ServerMicros:F0} µs, rtt {m.Rtt[i]:F0} µs");
        }

        Console.Error.WriteLine($"query: real layer {l} {planName}: server p50 {m.P50:F0} µs, rtt p50 {m.RttP50:F0} µs");
        return m;
    }

    /// <summary>One layer's decode queries with their f64 references over all tokens 0..p.</summary>
    private sealed class RealLayer(RealAttentionSet set, RealAttentionLayer data, int ctx, int count)
    {
        public RealAttentionSet Set { get; } = set;

        public RealAttentionLayer Data { get; } = data;

        public int Count { get; } = count;

        /// <summary>Decode query <paramref name="i"/>, f32 [1, heads, d] (the float16 dump widened).</summary>
        public float[] Query(int i) => Data.DecodeQueries.AsSpan(i * Set.Heads * Set.HeadDim, Set.Heads * Set.HeadDim).ToArray();

        /// <summary>Merges KvDb's answer with the window [ctx, p] and scores it against the full causal softmax.</summary>
        public void Score(int i, AttendResponse response, double epsilon, Result into)
        {
            int h = Set.Heads;
            int hkv = Set.KvHeads;
            int d = Set.HeadDim;
            int group = h / hkv;
            int position = Set.DecodePositions[i];
            int rowFloats = hkv * d;
            float[] q = Query(i);

            // The engine's side: exact attention over its local window [ctx, position].
            (double[] localOut, double[] localLse) = ReferenceAttention.Compute(
                Data.Keys.AsSpan(ctx * rowFloats, (position + 1 - ctx) * rowFloats),
                Data.Values.AsSpan(ctx * rowFloats, (position + 1 - ctx) * rowFloats),
                q, 1, h, hkv, d, Set.Scale);
            var local = new AttentionPartial(localOut.Select(x => (float)x).ToArray(), localLse.Select(x => (float)x).ToArray(), 1, h, d);
            AttentionPartial merged = AttentionPartial.Merge(KvDbClient.ToPartial(response, 1, h, d), local);

            // The model's answer: f64 causal attention over every token 0..position.
            (double[] fullOut, _) = ReferenceAttention.Compute(
                Data.Keys.AsSpan(0, (position + 1) * rowFloats), Data.Values.AsSpan(0, (position + 1) * rowFloats), q, 1, h, hkv, d, Set.Scale);

            var selectionStart = new int[hkv + 1];
            for (int kv = 0; kv < hkv; kv++)
            {
                selectionStart[kv + 1] = selectionStart[kv] + (response.SelectionCounts.Count > kv ? response.SelectionCounts[kv] : 0);
            }

            for (int head = 0; head < h; head++)
            {
                int kv = head / group;
                double[] p = Data.DecodeWeights(i, head);
                double mass = 0;
                for (int s = selectionStart[kv]; s < selectionStart[kv + 1]; s++)
                {
                    mass += p[response.Selected[s]];
                }

                double localMass = 0;
                for (int t = ctx; t <= position; t++)
                {
                    localMass += p[t];
                }

                double error = ReferenceAttention.RelativeL2(merged.Output.AsSpan(head * d, d), fullOut.AsSpan(head * d, d));
                HeadQuality? reported = response.Stats.HeadQuality.Count > head ? response.Stats.HeadQuality[head] : null;
                double attended = reported is null ? (double)(selectionStart[kv + 1] - selectionStart[kv]) / ctx : (double)reported.TokensExact / ctx;
                double sampled = reported is null ? 0 : (double)reported.TokensSampled / ctx;
                into.Add(error, mass + localMass, localMass, reported?.MassExact ?? double.NaN, attended, sampled, error > epsilon, reported?.Plan == "exact");
            }
        }
    }

    /// <summary>One (layer, plan)'s timings and quality sums over (decode query, query head) pairs.</summary>
    private sealed class Result(int count)
    {
        public double[] Rtt { get; } = new double[count];

        public double[] Server { get; } = new double[count];

        public string ServerPlan { get; set; } = string.Empty;

        public double P50 => Percentile.Median(Server);

        public double RttP50 => Percentile.Median(Rtt);

        public long Pairs { get; private set; }

        public long Violations { get; private set; }

        public long ExactHeads { get; private set; }

        public double Error { get; private set; }

        public double ErrorMax { get; private set; }

        public double Mass { get; private set; }

        public double MassMin { get; private set; } = 1;

        public double LocalMass { get; private set; }

        public double MassEstimate { get; private set; }

        public double Attended { get; private set; }

        public double Sampled { get; private set; }

        public void Add(double error, double mass, double localMass, double massEstimate, double attended, double sampled, bool violated, bool exactHead)
        {
            Pairs++;
            Violations += violated ? 1 : 0;
            ExactHeads += exactHead ? 1 : 0;
            Error += error;
            ErrorMax = Math.Max(ErrorMax, error);
            Mass += mass;
            MassMin = Math.Min(MassMin, mass);
            LocalMass += localMass;
            MassEstimate += massEstimate;
            Attended += attended;
            Sampled += sampled;
        }
    }
}

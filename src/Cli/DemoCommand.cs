using System.CommandLine;
using System.Diagnostics;
using KvDb.Client;
using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.Workload;

namespace KvDb.Cli;

/// <summary>
/// The main job end to end: an in-process server, a synthetic Llama-3-8B-shaped context streamed over gRPC (even
/// layers peaked, odd layers a mix of peaked, topical and diffuse heads), then the same decode queries answered EXACT
/// and AUTO: exact checked against the f64 reference (whole context, and excluding a local window merged back on the
/// client); AUTO with its speed-up, the mass it kept, its true error against the reference next to the tolerance it
/// promised, and what it chose per KV head and why.
/// </summary>
internal sealed class DemoCommand : Command
{
    private const int QueryHeads = 32;
    private const int KvHeads = 8;
    private const int HeadDim = 128;
    private const int LocalWindow = 256;
    private const KvDType Dtype = KvDType.BF16;

    public DemoCommand()
        : base("demo", """
            Start an in-process server on a free port, load a synthetic Llama-3-8B-shaped context, answer attention
            queries EXACT and AUTO and check them against an f64 reference (exit code 1 when a check fails).
            """)
    {
        Options.Add(Tokens);
        Options.Add(Layers);
        Options.Add(Queries);
        Options.Add(Epsilon);
        SetAction(parse => RunAsync(parse.GetValue(Tokens), parse.GetValue(Layers), parse.GetValue(Queries), parse.GetValue(Epsilon)));
    }

    public Option<int> Tokens { get; } = NumberOptions.Integer("--tokens", $"tokens in the context (more than the {LocalWindow}-token local window)", 64 * 1024, LocalWindow + 1, int.MaxValue);

    public Option<int> Layers { get; } = NumberOptions.Integer("--layers", "layers of the model (even ones peaked, odd ones mixed heads)", 2, 1, int.MaxValue);

    public Option<int> Queries { get; } = NumberOptions.Integer("--queries", "decode queries per layer", 4, 1, int.MaxValue);

    public Option<double> Epsilon { get; } = NumberOptions.Real("--epsilon", "AUTO's error tolerance (per-head relative L2)", 0.05, allowZero: false);

    private static async Task<int> RunAsync(int tokens, int layers, int queriesPerLayer, double epsilon)
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0 }).ConfigureAwait(false);
        Console.WriteLine($"server    listening on {server.Address} (in-process, memory store)");
        using var client = new KvDbClient(server.Address);

        Model model = await client.CreateModelAsync(new Model
        {
            Name = "llama-3-8b-demo",
            NumLayers = layers,
            NumQueryHeads = QueryHeads,
            NumKvHeads = KvHeads,
            HeadDim = HeadDim,
            Dtype = DType.Bf16,
        }).ConfigureAwait(false);
        Console.WriteLine($"model     {model.Name}: {model.NumLayers} layers, {model.NumQueryHeads} query heads, {model.NumKvHeads} kv heads, head_dim {model.HeadDim}, bf16, block {model.BlockSize}, scale {model.SoftmaxScale:G6}");

        Context context = await client.CreateContextAsync(model.Name).ConfigureAwait(false);
        var workloads = new SyntheticWorkload[layers];
        for (int l = 0; l < layers; l++)
        {
            var o = new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = KvHeads, NumQueryHeads = QueryHeads, HeadDim = HeadDim, Layer = l };
            workloads[l] = new SyntheticWorkload(l % 2 == 0 ? o with { DiffuseHeadFraction = 0 } : o with { DiffuseHeadFraction = 0.25, TopicalHeadFraction = 0.5 });
        }

        var tokenIds = new int[tokens];
        workloads[0].FillTokenIds(0, tokenIds);
        long appendBytes = 0;
        var appendClock = Stopwatch.StartNew();
        using (KvAppendStream stream = client.OpenAppend(context.Id))
        {
            const int chunk = 1024;
            for (int l = 0; l < layers; l++)
            {
                // Prefill queries travel with the append: the indexes AUTO uses are built around them.
                await stream.WriteSampleQueriesAsync(l, workloads[l].Queries(32, 77), QueryHeads, HeadDim).ConfigureAwait(false);
                for (int start = 0; start < tokens; start += chunk)
                {
                    int n = Math.Min(chunk, tokens - start);
                    byte[] k = workloads[l].KeyBytes(Dtype, start, n);
                    byte[] v = workloads[l].ValueBytes(Dtype, start, n);
                    await stream.WriteAsync(l, tokenIds.AsSpan(start, n), k, v, Dtype, KvHeads, HeadDim).ConfigureAwait(false);
                    appendBytes += k.Length + v.Length;
                }
            }

            AppendKvResponse ack = await stream.CompleteAsync().ConfigureAwait(false);
            appendClock.Stop();
            Console.WriteLine($"append    {ack.NumTokens} tokens × {layers} layers, {appendBytes / 1e6:F1} MB over gRPC in {appendClock.Elapsed.TotalSeconds:F2} s (includes generating the data)");
        }

        await WaitForAutoAsync(client, context.Id, layers, workloads).ConfigureAwait(false);
        var auto = new Plan { Kind = PlanKind.Auto, Epsilon = epsilon, Delta = 0.05 };
        double worstOut = 0;
        double worstLse = 0;
        double worstMerged = 0;
        double worstAuto = 0;
        long autoPairs = 0;
        long autoViolations = 0;
        var exactMicros = new List<double>();
        var autoMicros = new List<double>();
        for (int l = 0; l < layers; l++)
        {
            float[] keys = Decode(workloads[l].KeyBytes(Dtype, 0, tokens));
            float[] values = Decode(workloads[l].ValueBytes(Dtype, 0, tokens));
            Console.WriteLine($"layer {l}   {(l % 2 == 0 ? "peaked heads (a few needles hold the mass)" : "mixed heads: 1/4 diffuse, 1/2 topical, 1/4 peaked")}");
            for (int qi = 0; qi < queriesPerLayer; qi++)
            {
                float[] query = workloads[l].Queries(1, (ulong)(1000 + qi));
                AttentionPartial full = await client.AttendAsync(context.Id, l, query, 1, QueryHeads, HeadDim, plan: new Plan { Kind = PlanKind.Exact }).ConfigureAwait(false);
                AttentionPartial sparse = await client.AttendAsync(context.Id, l, query, 1, QueryHeads, HeadDim, plan: auto).ConfigureAwait(false);
                (double[] refOut, double[] refLse) = ReferenceAttention.Compute(keys, values, query, 1, QueryHeads, KvHeads, HeadDim, model.SoftmaxScale);
                double outErr = ReferenceAttention.MaxAbsError(full.Output, refOut);
                double lseErr = ReferenceAttention.MaxAbsError(full.Lse, refLse);

                // The engine's view: KvDb answers all but the local window (EXACT: checked against the f64 reference below); the window's partial is merged in locally.
                AttentionPartial remote = await client.AttendAsync(context.Id, l, query, 1, QueryHeads, HeadDim, tokens - LocalWindow, tokens, new Plan { Kind = PlanKind.Exact }).ConfigureAwait(false);
                (double[] winOut, double[] winLse) = ReferenceAttention.Compute(keys, values, query, 1, QueryHeads, KvHeads, HeadDim, model.SoftmaxScale, 0, tokens - LocalWindow);
                var local = new AttentionPartial(ToFloat(winOut), ToFloat(winLse), 1, QueryHeads, HeadDim);
                AttentionPartial merged = AttentionPartial.Merge(remote, local);
                double mergedErr = ReferenceAttention.MaxAbsError(merged.Output, refOut);
                worstOut = Math.Max(worstOut, outErr);
                worstLse = Math.Max(worstLse, lseErr);
                worstMerged = Math.Max(worstMerged, mergedErr);

                AutoQuality q = Quality(sparse, refOut, epsilon, tokens);
                worstAuto = Math.Max(worstAuto, q.WorstError);
                autoPairs += QueryHeads;
                autoViolations += q.Violations;
                exactMicros.Add(full.Stats!.ServerMicros);
                autoMicros.Add(sparse.Stats!.ServerMicros);
                Console.WriteLine(
                    $"  query {qi}  EXACT {full.Stats.ServerMicros / 1000,6:F2} ms (max |Δ| vs f64 {outErr:E1}, window-merged {mergedErr:E1})  " +
                    $"AUTO {sparse.Stats.ServerMicros / 1000,6:F2} ms = {full.Stats.ServerMicros / sparse.Stats.ServerMicros,5:F1}× faster, " +
                    $"read {q.AttendedShare:P2} exactly + {q.SampledShare:P2} sampled, mass kept {q.MeanMass:F4}, rel-L2 max {q.WorstError:F4} (ε {epsilon}, promised ≤ {q.WorstPredicted:G2})");
                ExplainResponse why = await client.ExplainAsync(context.Id, l, query, 1, QueryHeads, HeadDim, plan: auto).ConfigureAwait(false);
                Console.WriteLine($"           AUTO chose {why.Plan}: {Why(why)}");
            }
        }

        exactMicros.Sort();
        autoMicros.Sort();
        double exactMedian = exactMicros[exactMicros.Count / 2];
        double autoMedian = autoMicros[autoMicros.Count / 2];
        long bytesPerQuery = 2L * tokens * KvHeads * HeadDim * KvDTypeInfo.SizeOf(Dtype);
        Console.WriteLine($"summary   {exactMicros.Count} queries over {tokens} tokens: EXACT median {exactMedian / 1000:F2} ms ({bytesPerQuery / (exactMedian * 1e3):F1} GB/s of K/V), " +
                          $"max |Δoutput| {worstOut:E2}, max |Δlse| {worstLse:E2}, max merged |Δ| {worstMerged:E2}");
        Console.WriteLine($"summary   AUTO median {autoMedian / 1000:F2} ms ({exactMedian / autoMedian:F1}× faster than EXACT); worst per-head rel-L2 {worstAuto:F4}, " +
                          $"{autoViolations} of {autoPairs} (query, head) pairs above ε = {epsilon} (the contract allows δ = 5%)");
        await client.DeleteContextAsync(context.Id).ConfigureAwait(false);
        bool exactOk = worstOut <= 1e-4 && worstLse <= 1e-4 && worstMerged <= 1e-4;
        bool autoOk = autoViolations <= Math.Max(1, 0.05 * autoPairs * 2);
        Console.WriteLine(exactOk ? "result    OK: every EXACT answer matches the f64 reference" : "result    FAILED: an EXACT answer differs from the f64 reference");
        Console.WriteLine(autoOk ? "result    OK: AUTO kept its tolerance" : "result    FAILED: AUTO exceeded its tolerance more often than delta allows");
        return exactOk && autoOk ? 0 : 1;
    }

    /// <summary>AUTO answers exactly until the layer's index is built in the background: wait (bounded) so the demo shows AUTO's plan.</summary>
    private static async Task WaitForAutoAsync(KvDbClient client, string contextId, int layers, SyntheticWorkload[] workloads)
    {
        var clock = Stopwatch.StartNew();
        for (int l = 0; l < layers; l++)
        {
            float[] probe = workloads[l].Queries(1, 5);
            while (true)
            {
                ExplainResponse e = await client.ExplainAsync(contextId, l, probe, 1, QueryHeads, HeadDim, plan: new Plan { Kind = PlanKind.Auto }).ConfigureAwait(false);
                if (e.Decision != PlanDecision.IndexNotReady || clock.Elapsed > TimeSpan.FromMinutes(5))
                {
                    break;
                }

                Console.WriteLine($"index     layer {l}: AUTO answers exactly while its index is built in the background ({clock.Elapsed.TotalSeconds:F0} s)");
                await Task.Delay(3000).ConfigureAwait(false);
            }
        }

        Console.WriteLine($"index     ready after {clock.Elapsed.TotalSeconds:F0} s");
    }

    /// <summary>What AUTO chose for the request and why, from the structured explain: the decision, then the KV heads by choice.</summary>
    private static string Why(ExplainResponse e)
    {
        if (e.Decision != PlanDecision.AutoSampled)
        {
            return e.Decision switch
            {
                PlanDecision.AutoExactCheaper => "exact: the layer is so short that streaming it costs less than the smallest sampled answer",
                PlanDecision.IndexNotReady => "exact while the heavy-hitter index is built",
                PlanDecision.IndexFailed => "exact: the heavy-hitter index failed to build (retrying)",
                _ => $"exact ({e.Decision})",
            };
        }

        var byChoice = new SortedDictionary<HeadChoice, int>();
        foreach (Protocol.V1.HeadExplain h in e.Heads)
        {
            byChoice[h.Choice] = byChoice.GetValueOrDefault(h.Choice) + 1;
        }

        var text = new System.Text.StringBuilder();
        foreach ((HeadChoice choice, int heads) in byChoice)
        {
            text.Append(text.Length == 0 ? "" : "; ").Append($"{heads} KV head{(heads == 1 ? "" : "s")} ").Append(choice switch
            {
                HeadChoice.Sampled => "sampled (heavy hitters exact + a uniform sample of the rest, sized for ε)",
                HeadChoice.HeavyOnly => "heavy hitters only (nothing left to sample)",
                HeadChoice.DiffuseAfterPilot => "exact: the pilot found attention too diffuse (the sample ε needs would cost more than exact)",
                HeadChoice.ExactBefore => "exact: needed exact attention in its last queries",
                HeadChoice.ExactCheaper => "exact: cheaper than its sampled estimate",
                HeadChoice.LatencyCapped => "sampled, cut to max_latency_us",
                _ => choice.ToString(),
            });
        }

        return text.ToString();
    }

    private readonly record struct AutoQuality(double WorstError, long Violations, double MeanMass, double WorstPredicted, double AttendedShare, double SampledShare);

    /// <summary>AUTO's answer against the f64 reference: per query head rel-L2, and what its stats report per head.</summary>
    private static AutoQuality Quality(AttentionPartial sparse, double[] reference, double epsilon, int tokens)
    {
        double worst = 0;
        long violations = 0;
        for (int h = 0; h < QueryHeads; h++)
        {
            double diff = 0;
            double norm = 0;
            for (int j = 0; j < HeadDim; j++)
            {
                double r = reference[(h * HeadDim) + j];
                double e = sparse.Output[(h * HeadDim) + j] - r;
                diff += e * e;
                norm += r * r;
            }

            double rel = Math.Sqrt(diff / Math.Max(norm, 1e-30));
            worst = Math.Max(worst, rel);
            violations += rel > epsilon ? 1 : 0;
        }

        double mass = 0;
        double predicted = 0;
        double attended = 0;
        double sampled = 0;
        int group = QueryHeads / KvHeads;
        foreach (HeadQuality q in sparse.Stats!.HeadQuality)
        {
            mass += q.MassExact / QueryHeads;
            predicted = Math.Max(predicted, q.PredictedError);
            if (q.QueryHead % group == 0)
            {
                attended += (double)q.TokensExact / tokens / KvHeads;
                sampled += (double)q.TokensSampled / tokens / KvHeads;
            }
        }

        return new AutoQuality(worst, violations, mass, predicted, attended, sampled);
    }


    private static float[] Decode(byte[] bytes) => ElementConversion.ToSingle(Dtype, bytes);

    private static float[] ToFloat(double[] values)
    {
        var f = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            f[i] = (float)values[i];
        }

        return f;
    }
}

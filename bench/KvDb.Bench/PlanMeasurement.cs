using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// One plan's figures in the query suite: server and round-trip times, bytes read, and quality against the f64
/// reference, overall and (for AUTO) per head class.
/// </summary>
internal sealed class PlanMeasurement
{
    private readonly Dictionary<string, Quality> _classes = [];
    private readonly Quality _all = new();

    public PlanMeasurement(string kind, int count)
    {
        Kind = kind;
        Rtt = new double[count];
        Server = new double[count];
    }

    public string Kind { get; }

    public string PlanName { get; set; } = string.Empty;

    public double[] Rtt { get; }

    public double[] Server { get; }

    public long Bytes { get; set; }

    public double P50 => Percentile.Median(Server);

    public double RttP50 => Percentile.Median(Rtt);

    /// <summary>Scores one answered query (asked with return_selection) against its reference.</summary>
    public void AddQuality(QueryContext context, int queryIndex, AttendResponse response, double epsilon)
    {
        (_, double[] exact, double[] probabilities) = context.Reference(queryIndex);
        const int hq = 32;
        const int hkv = 8;
        const int d = 128;
        int group = hq / hkv;
        float[] output = TensorCodec.ToFiniteSingles("output", response.Output);
        var selectionStart = new int[hkv + 1];
        for (int kv = 0; kv < hkv; kv++)
        {
            selectionStart[kv + 1] = selectionStart[kv] + (response.SelectionCounts.Count > kv ? response.SelectionCounts[kv] : 0);
        }

        for (int h = 0; h < hq; h++)
        {
            int kv = h / group;
            double error = ReferenceAttention.RelativeL2(output.AsSpan(h * d, d), exact.AsSpan(h * d, d));
            double mass = 0;
            for (int i = selectionStart[kv]; i < selectionStart[kv + 1]; i++)
            {
                mass += probabilities[(h * context.Tokens) + response.Selected[i]];
            }

            HeadQuality? reported = response.Stats.HeadQuality.Count > h ? response.Stats.HeadQuality[h] : null;
            double attended = reported is null ? (double)(selectionStart[kv + 1] - selectionStart[kv]) / context.Tokens : (double)reported.TokensExact / context.Tokens;
            double sampled = reported is null ? 0 : (double)reported.TokensSampled / context.Tokens;
            double massEstimate = reported?.MassExact ?? double.NaN;
            bool exactHead = reported is not null && reported.Plan == "exact";
            string headClass = context.HeadClass(kv);
            if (!_classes.TryGetValue(headClass, out Quality? q))
            {
                _classes[headClass] = q = new Quality();
            }

            foreach (Quality into in new[] { _all, q })
            {
                into.Add(error, mass, massEstimate, attended, sampled, error > epsilon, exactHead);
            }
        }
    }

    /// <summary>Prints the plan's line and, when the plan reported per-head quality, one line per head class.</summary>
    public void Write(string workload, long ctx, double epsilon, double exactP50, double exactRtt, string simd)
    {
        Line(workload, ctx, epsilon, simd, _all)
            .Add("p50_us", P50, 0)
            .Add("p99_us", Percentile.Of(Server, 0.99), 0)
            .Add("rtt_p50_us", RttP50, 0)
            .Add("rtt_p99_us", Percentile.Of(Rtt, 0.99), 0)
            .Add("bytes_read", Bytes / Server.Length)
            .Add("speedup_vs_exact", exactP50 > 0 ? exactP50 / P50 : double.NaN, 2)
            .Add("rtt_speedup_vs_exact", exactRtt > 0 ? exactRtt / RttP50 : double.NaN, 2)
            .WriteTo(Console.Out);
        if (Kind != "auto")
        {
            return;
        }

        foreach ((string headClass, Quality q) in _classes)
        {
            Line(workload, ctx, epsilon, simd, q).Add("head_class", headClass).WriteTo(Console.Out);
        }
    }

    private JsonLine Line(string workload, long ctx, double epsilon, string simd, Quality q) => new JsonLine()
        .Add("suite", "query")
        .Add("plan", Kind)
        .Add("server_plan", PlanName)
        .Add("workload", workload)
        .Add("ctx", ctx)
        .Add("epsilon", epsilon, 3)
        .Add("attended_frac", q.Attended / q.Pairs, 4)
        .Add("sampled_frac", q.Sampled / q.Pairs, 4)
        .Add("exact_head_frac", (double)q.ExactHeads / q.Pairs, 3)
        .Add("mass", q.Mass / q.Pairs, 4)
        .Add("mass_min", q.MassMin, 4)
        .Add("mass_est", q.MassEstimate / q.Pairs, 4)
        .Add("rel_l2", q.Error / q.Pairs, 5)
        .Add("rel_l2_max", q.ErrorMax, 5)
        .Add("p_violation", (double)q.Violations / q.Pairs, 4)
        .Add("pairs", q.Pairs)
        .Add("simd", simd);

    private sealed class Quality
    {
        public long Pairs;
        public long Violations;
        public long ExactHeads;
        public double Error;
        public double ErrorMax;
        public double Mass;
        public double MassMin = 1;
        public double MassEstimate;
        public double Attended;
        public double Sampled;

        public void Add(double error, double mass, double massEstimate, double attended, double sampled, bool violated, bool exactHead)
        {
            Pairs++;
            Violations += violated ? 1 : 0;
            ExactHeads += exactHead ? 1 : 0;
            Error += error;
            ErrorMax = Math.Max(ErrorMax, error);
            Mass += mass;
            MassMin = Math.Min(MassMin, mass);
            MassEstimate += massEstimate;
            Attended += attended;
            Sampled += sampled;
        }
    }
}

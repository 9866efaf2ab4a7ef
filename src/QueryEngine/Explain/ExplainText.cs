using System.Text;
using KvDb.Index.Catalog;

namespace KvDb.QueryEngine.Explain;

/// <summary>Renders an <see cref="AttentionExplain"/> as the one-line <c>explain</c> string of the wire's stats (for people; programs read the record).</summary>
public static class ExplainText
{
    /// <summary>One line: what ran and why, the indexes consulted, estimated against actual, and where.</summary>
    public static string Render(AttentionExplain e)
    {
        var b = new StringBuilder();
        b.Append(e.Requested switch
        {
            PlanKind.Exact => "exact requested",
            PlanKind.Auto or PlanKind.Unspecified => "auto",
            _ => e.Requested.ToString(),
        });
        b.Append(": ").Append(e.Decision switch
        {
            PlanDecision.Requested or PlanDecision.AutoExact when e.Plan == "exact" => $"exact over all {e.LayerTokens} tokens of layer {e.Layer}",
            PlanDecision.Requested => $"{e.Plan}, sinks always attended",
            PlanDecision.NoCatalog => $"no index catalog configured; exact over {e.LayerTokens} tokens",
            PlanDecision.IndexFailed => $"an index failed to build (retrying); exact over {e.LayerTokens} tokens meanwhile",
            PlanDecision.AutoSampled => $"heavy hitters exact plus a verified sample per KV head ({e.Plan}), or exact where that costs less",
            PlanDecision.AutoExactCheaper => $"exact over all {e.LayerTokens} tokens of layer {e.Layer}: cheaper than the smallest sampled answer",
            _ => $"an index is being built in the background; exact over {e.LayerTokens} tokens meanwhile",
        });
        foreach (IndexStatus s in e.Indexes)
        {
            b.Append("; ").Append(Render(s));
        }

        if (e.Contract is QualityContract c)
        {
            b.Append($"; contract epsilon {c.Epsilon:G3}, delta {c.Delta:G3}");
            if (c.MaxLatencyMicros > 0)
            {
                b.Append($", max latency {c.MaxLatencyMicros} µs");
            }

            foreach (HeadExplain h in e.Heads)
            {
                b.Append("; ").Append(Render(h));
            }

            AppendUnbounded(b, e.Heads);
        }

        b.Append($"; estimated {e.Estimated.Rows} K/V rows and {e.Estimated.Bytes} B, attended {e.Actual.TokensAttended} (query token, KV head, position) triples and read {e.Actual.BytesRead} B");
        b.Append(e.Site == ExecutionSite.Gpu
            ? $" on gpu (promoted {e.DevicePromoted} of {e.DeviceBlocks} blocks)"
            : e.DeviceReason.Length == 0 ? " on cpu" : $" on cpu ({e.DeviceReason})");
        return b.ToString();
    }

    /// <summary>One KV head as a phrase: its plan and why, what it attended, its heavy mass and bound, and what it beat.</summary>
    public static string Render(HeadExplain h)
    {
        var b = new StringBuilder();
        b.Append($"kv {h.KvHead} {h.Plan} ({Render(h.Choice)}): {h.Attended} exact");
        if (h.Sampled > 0)
        {
            b.Append($" + {h.Sampled} sampled");
        }

        b.Append($", mass {h.MassExact:F3}");
        b.Append(h.ErrorBound switch
        {
            < 0 => ", no bound",
            0 => ", bound 0",
            _ => $", bound {h.ErrorBound:G3} (predicted {h.MaxPredictedError:G3})",
        });
        b.Append($", {h.ChosenMicros:F0} µs by the cost model");
        foreach (Alternative a in h.Alternatives)
        {
            if (a.LostBecause != LostBecause.NoQualityGuarantee)
            {
                b.Append($", {a.Plan} {Micros(a.EstimatedMicros)} lost: {Render(a.LostBecause)}");
            }
        }

        return b.ToString();
    }

    /// <summary>A head choice as a phrase.</summary>
    public static string Render(HeadChoice c) => c switch
    {
        HeadChoice.Sampled => "sampled",
        HeadChoice.HeavyOnly => "heavy hitters cover every token",
        HeadChoice.DiffuseAfterPilot => "diffuse after the pilot",
        HeadChoice.ExactBefore => "needed exact before",
        HeadChoice.ExactCheaper => "exact cheaper",
        HeadChoice.LatencyCapped => "sample cut to the latency target",
        _ => "planned",
    };

    /// <summary>Why an alternative lost, as a phrase.</summary>
    public static string Render(LostBecause l) => l switch
    {
        LostBecause.IndexNotReady => "index not ready",
        LostBecause.IndexFailed => "index failed",
        LostBecause.NoCatalog => "no index catalog",
        LostBecause.NoQualityGuarantee => "no quality guarantee",
        LostBecause.NeededExactBefore => "the head needed exact before",
        LostBecause.OverLatencyTarget => "over the latency target",
        _ => "costlier",
    };

    /// <summary>One index status as a phrase.</summary>
    public static string Render(IndexStatus s)
    {
        string text = s.State switch
        {
            IndexState.Ready => $"index \"{s.Spec}\" covers {s.IndexedTokens} of {s.LayerTokens} tokens ({Segments(s)}), the tail is scanned exactly",
            IndexState.Failed => $"index \"{s.Spec}\" for layer {s.Layer} failed to build ({s.Error}); retrying",
            IndexState.Building => $"index \"{s.Spec}\" for layer {s.Layer} is being built in the background",
            _ => $"index \"{s.Spec}\" for layer {s.Layer} does not exist yet",
        };
        if (s.Stale)
        {
            text += " (the layer changed below what the indexes covered)";
        }

        return s.Problem is null ? text : $"{text}; {Render(s.Problem)}";
    }

    /// <summary>An index-file problem as a phrase.</summary>
    public static string Render(IndexFileProblem p) => p.Kind switch
    {
        IndexFileProblemKind.Unreadable => $"index file {p.File} was unreadable ({p.Reason}); moved aside to {p.MovedAsideTo} and rebuilt",
        IndexFileProblemKind.NotSaved => $"index file {p.File} could not be saved ({p.Reason}); it will be rebuilt after a restart",
        _ => $"index file garbage collection failed: {p.Reason}",
    };

    private static string Micros(double micros) => double.IsFinite(micros) ? $"{micros:F0} µs" : "(no estimate)";

    /// <summary>The plans every head set aside for want of a quality guarantee, once.</summary>
    private static void AppendUnbounded(StringBuilder b, IReadOnlyList<HeadExplain> heads)
    {
        if (heads.Count == 0)
        {
            return;
        }

        string separator = "; no quality guarantee: ";
        foreach (Alternative a in heads[0].Alternatives)
        {
            if (a.LostBecause == LostBecause.NoQualityGuarantee)
            {
                b.Append(separator).Append(a.Plan);
                separator = ", ";
            }
        }
    }

    private static string Segments(IndexStatus s)
    {
        string origin = s.BaseOrigin switch
        {
            SegmentOrigin.LoadedFromDisk => "loaded from disk",
            SegmentOrigin.Shared => "shared",
            _ => "built",
        };
        string baseText = s.BaseTokens == 0 ? "no base" : $"base {s.BaseTokens} {origin}";
        string suffix = s.SuffixTokens == 0 ? "no suffix" : $"own suffix {s.SuffixTokens}";
        return $"{baseText}, {suffix}";
    }
}

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
            _ => $"an index is being built in the background; exact over {e.LayerTokens} tokens meanwhile",
        });
        foreach (IndexStatus s in e.Indexes)
        {
            b.Append("; ").Append(Render(s));
        }

        b.Append($"; estimated {e.Estimated.Rows} K/V rows and {e.Estimated.Bytes} B, attended {e.Actual.TokensAttended} (query token, KV head, position) triples and read {e.Actual.BytesRead} B");
        b.Append(e.Site == ExecutionSite.Gpu
            ? $" on gpu (promoted {e.DevicePromoted} of {e.DeviceBlocks} blocks)"
            : e.DeviceReason.Length == 0 ? " on cpu" : $" on cpu ({e.DeviceReason})");
        return b.ToString();
    }

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

namespace KvDb.Index.Catalog;

/// <summary>
/// What the catalog holds for one (context, layer, spec), as a value: the state, how many of the layer's tokens
/// the ready view covers (the rest is attended exactly), where its base came from, and anything that went wrong.
/// Reading it changes nothing (<see cref="LayerIndexCatalog.Probe"/>).
/// </summary>
/// <param name="State">Absent, building, ready or failed.</param>
/// <param name="Spec">The index family spec.</param>
/// <param name="Layer">The layer.</param>
/// <param name="LayerTokens">Tokens of the layer snapshot the status was read for.</param>
/// <param name="IndexedTokens">Tokens the ready view covers (positions [0, IndexedTokens)); 0 unless ready.</param>
/// <param name="BaseTokens">Tokens of the shared base segment of the ready view (0: none).</param>
/// <param name="BaseOrigin">How the base was obtained.</param>
/// <param name="SuffixTokens">Tokens of the context's own suffix segment of the ready view (0: none).</param>
/// <param name="Stale">The layer was rolled back and rewritten below what the previous view covered, so that view is not served.</param>
/// <param name="Error">The last build's error text when <see cref="State"/> is failed.</param>
/// <param name="Problem">An index-file problem the last update met (e.g. a file moved aside and rebuilt).</param>
public sealed record IndexStatus(
    IndexState State,
    string Spec,
    int Layer,
    long LayerTokens,
    long IndexedTokens = 0,
    long BaseTokens = 0,
    SegmentOrigin BaseOrigin = SegmentOrigin.None,
    long SuffixTokens = 0,
    bool Stale = false,
    string? Error = null,
    IndexFileProblem? Problem = null)
{
    /// <summary>True when a view can be searched.</summary>
    public bool IsReady => State == IndexState.Ready;
}

namespace KvDb.Store.Events;

/// <summary>What happened to a content-addressed (prefix) block.</summary>
public enum KvEventKind
{
    /// <summary>A full block became the shared copy of its address (a router may now send that prefix here).</summary>
    Stored,

    /// <summary>The shared copy was freed: no context holds it any more.</summary>
    Removed,

    /// <summary>Moved from the CPU tier to the disk tier.</summary>
    Demoted,

    /// <summary>Read back from the disk tier into the CPU tier.</summary>
    Promoted,

    /// <summary>A context was created (Block = its id, Tokens = its shared prefix).</summary>
    ContextCreated,

    /// <summary>A context was deleted by a call (Block = its id, Tokens = the tokens it held).</summary>
    ContextDeleted,

    /// <summary>A context's TTL ran out and the sweep deleted it (Block = its id).</summary>
    ContextExpired,

    /// <summary>A context layer's index is ready or grew (Block = "id/layer", Tokens = tokens indexed, Tier = the index spec).</summary>
    IndexReady,
}

/// <summary>
/// One KV event, as vLLM / llm-d routers consume them: a sequence number (gaps mean a subscriber fell behind), the
/// time, the kind, the model, the block's address ("chain hash hex/layer": the same prefix of the same model in
/// the same namespace has the same address), its token count and the tier it is in afterwards.
/// </summary>
public sealed record KvEvent(long Sequence, long UnixMs, KvEventKind Kind, string Model, string Block, int Tokens, string Tier)
{
    /// <summary>The kind as the wire and the dashboard name it ("stored", "context_created", "index_ready", …).</summary>
    public string KindName => Kind switch
    {
        KvEventKind.ContextCreated => "context_created",
        KvEventKind.ContextDeleted => "context_deleted",
        KvEventKind.ContextExpired => "context_expired",
        KvEventKind.IndexReady => "index_ready",
        _ => Kind.ToString().ToLowerInvariant(),
    };
}

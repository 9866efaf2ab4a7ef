namespace KvDb.Store;

/// <summary>A snapshot of a context's public state.</summary>
public sealed record ContextInfo(string Id, string Model, string Namespace, long NumTokens, IReadOnlyList<long> LayerTokens, long Bytes)
{
    /// <summary>When the context was created (Unix ms).</summary>
    public long CreatedUnixMs { get; init; }

    /// <summary>When the TTL sweep deletes it (Unix ms); 0 = never.</summary>
    public long ExpiresAtUnixMs { get; init; }

    /// <summary>True while the context's blocks are held in the CPU tier (see <see cref="IKvStore.UpdateContext"/>).</summary>
    public bool Pinned { get; init; }

    /// <summary>The tier a pinned context's blocks are not demoted below (<see cref="PinTier.Cpu"/> when not pinned).</summary>
    public PinTier PinTier { get; init; }
}

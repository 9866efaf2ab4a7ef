namespace KvDb.Store;

/// <summary>A snapshot of a context's public state.</summary>
public sealed record ContextInfo(string Id, string Model, string Namespace, long NumTokens, IReadOnlyList<long> LayerTokens, long Bytes);

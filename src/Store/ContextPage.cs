namespace KvDb.Store;

/// <summary>One page of contexts in id order; <see cref="NextPageToken"/> is empty on the last page.</summary>
public sealed record ContextPage(IReadOnlyList<ContextInfo> Contexts, string NextPageToken);

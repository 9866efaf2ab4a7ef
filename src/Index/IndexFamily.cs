namespace KvDb.Index;

/// <summary>
/// One index family as the registry knows it: its spec name and keys, how an instance is created from a parsed
/// spec, the payload version its files carry, and its default search budget for a context of a given length.
/// </summary>
/// <param name="Name">The spec's family name ("block", "lsh", …).</param>
/// <param name="Keys">The spec keys the family accepts.</param>
/// <param name="FormatVersion">The payload version written and accepted (bumped when the payload changes).</param>
/// <param name="Create">Creates an empty index from a parsed spec and the key dimension.</param>
/// <param name="DefaultParameters">Default search parameters for a context of that many keys.</param>
public sealed record IndexFamily(
    string Name,
    IReadOnlyList<string> Keys,
    int FormatVersion,
    Func<IndexSpec, int, IKeyIndex> Create,
    Func<long, SearchParameters> DefaultParameters);

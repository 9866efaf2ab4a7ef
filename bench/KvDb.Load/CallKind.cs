namespace KvDb.Load;

/// <summary>The calls an engine makes, each timed and counted on its own.</summary>
public enum CallKind
{
    /// <summary>CreateContext.</summary>
    Create,

    /// <summary>The prompt's AppendKv stream (every layer).</summary>
    AppendPrefix,

    /// <summary>One decoded token's AppendKv stream (every layer).</summary>
    AppendToken,

    /// <summary>Unary Attend.</summary>
    Attend,

    /// <summary>One request/response of an AttendStream.</summary>
    AttendStream,

    /// <summary>ForkContext.</summary>
    Fork,

    /// <summary>LookupPrefix.</summary>
    Lookup,

    /// <summary>DeleteContext.</summary>
    Delete,
}

namespace KvDb.Core;

/// <summary>A domain error whose message says what was wrong and what to send instead.</summary>
public sealed class KvDbException : Exception
{
    /// <summary>Creates an error of the given kind.</summary>
    public KvDbException(KvDbErrorCode code, string message)
        : base(message)
    {
        Code = code;
    }

    /// <summary>The kind of failure.</summary>
    public KvDbErrorCode Code { get; }

    /// <summary>Shorthand for an <see cref="KvDbErrorCode.InvalidArgument"/> error.</summary>
    public static KvDbException Invalid(string message) => new(KvDbErrorCode.InvalidArgument, message);

    /// <summary>Shorthand for a <see cref="KvDbErrorCode.NotFound"/> error.</summary>
    public static KvDbException NotFound(string message) => new(KvDbErrorCode.NotFound, message);
}

namespace KvDb.Core;

/// <summary>What kind of failure a <see cref="KvDbException"/> reports; the server maps each to one gRPC status code.</summary>
public enum KvDbErrorCode
{
    /// <summary>The request is malformed (shape, dtype, range, value).</summary>
    InvalidArgument,
    /// <summary>A named model, context or block does not exist.</summary>
    NotFound,
    /// <summary>A resource with that name exists with different content.</summary>
    AlreadyExists,
    /// <summary>The resource is not in a state that allows the call.</summary>
    FailedPrecondition,
    /// <summary>A byte budget or quota is full.</summary>
    ResourceExhausted,
    /// <summary>Stored data failed its checksum or could not be read.</summary>
    DataLoss,
    /// <summary>A bug or an unexpected fault.</summary>
    Internal,
    /// <summary>A device failed the operation (a disk read error); the data may be intact and a retry may succeed.</summary>
    Unavailable,
}

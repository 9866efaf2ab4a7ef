namespace KvDb.Kernels;

/// <summary>
/// Work stopped because the call's deadline passed (not because the caller cancelled it): the client is owed
/// DEADLINE_EXCEEDED, which the server can answer before the call's own deadline timer fires.
/// </summary>
public sealed class DeadlineExceededException : OperationCanceledException
{
    /// <summary>Creates the exception for work stopped at its deadline.</summary>
    public DeadlineExceededException()
        : base("the call's deadline passed before the work finished")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public DeadlineExceededException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DeadlineExceededException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

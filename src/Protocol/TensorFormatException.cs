namespace KvDb.Protocol;

/// <summary>A wire tensor does not have the dtype, shape or size the call needs; the message says what to send.</summary>
public sealed class TensorFormatException : Exception
{
    /// <summary>Creates the error.</summary>
    public TensorFormatException(string message)
        : base(message)
    {
    }
}

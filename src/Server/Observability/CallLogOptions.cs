namespace KvDb.Server.Observability;

/// <summary>How calls are logged: every call at Debug, calls slower than <see cref="SlowCall"/> as warnings.</summary>
public sealed record CallLogOptions(TimeSpan SlowCall);

namespace KvDb.Store;

/// <summary>
/// One AppendKv stream: chunks are applied as they arrive (so readers can see progress), and either
/// <see cref="Commit"/> keeps them all or Dispose without commit rolls every layer back to its length
/// at the start. With a data directory, the commit returns only once the stream is durable.
/// </summary>
public interface IAppendTransaction : IDisposable
{
    /// <summary>
    /// Appends <paramref name="tokenIds"/>.Length tokens to <paramref name="layer"/>. Keys and values are raw
    /// bytes of the model dtype in wire layout [n, num_kv_heads, head_dim]. Validation failures throw before
    /// anything of this chunk is stored.
    /// </summary>
    void Append(int layer, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values);

    /// <summary>Makes the appended chunks permanent and returns the context's state.</summary>
    ContextInfo Commit();

    /// <summary>As <see cref="Commit"/>, waiting for durability without blocking a thread.</summary>
    Task<ContextInfo> CommitAsync() => Task.FromResult(Commit());
}

namespace KvDb.Index;

/// <summary>The half of persistence a family implements: read back, after the common header, the payload its Save wrote.</summary>
internal interface IIndexPayload
{
    /// <summary>Replaces the index content with the payload read from <paramref name="r"/>.</summary>
    void LoadPayload(BinaryReader r);
}

namespace KvDb.Index;

/// <summary>Which faiss index a <see cref="FaissIndex"/> wraps; numbering matches the shim's kind tags.</summary>
public enum FaissKind
{
    /// <summary>IndexHNSWFlat, inner product; Effort = efSearch.</summary>
    Hnsw = 1,
    /// <summary>IndexIVFFlat over a flat inner-product quantizer; Effort = nprobe.</summary>
    Ivf = 2,
}

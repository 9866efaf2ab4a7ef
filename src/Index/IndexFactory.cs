namespace KvDb.Index;

/// <summary>
/// Builds indexes from spec strings so the optimizer, benchmarks and tests name them the same way:
/// "block[:B=16,O=5]", "centroid[:L2,C=32,I=4,P=8,U=0]", "lsh[:K=8,L=75,T=2,Q=1]", "graph[:R=24,Q=384,N=0,E=8,C=0]",
/// "faiss:HNSW32[,efc=40,ef=64,O=5]", "faiss:IVF[nlist][,nprobe=8,O=5]". Families are registered in <see cref="IndexFamilies"/>.
/// </summary>
public static class IndexFactory
{
    /// <summary>The default spec of every family, in the order benchmarks report them.</summary>
    public static IReadOnlyList<string> DefaultSpecs { get; } = ["block", "centroid:L2", "lsh", "graph", "faiss:HNSW32", "faiss:IVF"];

    /// <summary>Creates an empty index for <paramref name="dimension"/>-dimensional keys; throws ArgumentException for a bad spec.</summary>
    public static IKeyIndex Create(string spec, int dimension)
    {
        IndexSpec s = IndexSpec.Parse(spec);
        IndexFamily family = IndexFamilies.Get(s.Family);
        s.AllowOnly(family.Keys);
        return family.Create(s, dimension);
    }

    /// <summary>Default search parameters of the spec's family for a context of <paramref name="tokens"/> keys.</summary>
    public static SearchParameters DefaultParameters(string spec, long tokens) => IndexFamilies.Get(IndexSpec.Parse(spec).Family).DefaultParameters(tokens);

    /// <summary>Restores an index written by <see cref="IKeyIndex.Save"/>.</summary>
    public static IKeyIndex Load(Stream stream)
    {
        using BinaryReader r = IndexFormat.Reader(stream);
        (string spec, int dimension) = IndexFormat.ReadHeader(r);
        IKeyIndex index = Create(spec, dimension);
        if (index is not IIndexPayload payload)
        {
            index.Dispose();
            throw new InvalidDataException($"index spec \"{spec}\" has no loader");
        }

        payload.LoadPayload(r);
        return index;
    }
}

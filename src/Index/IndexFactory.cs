namespace KvDb.Index;

/// <summary>
/// Builds indexes from spec strings so the optimizer, benchmarks and tests name them the same way:
/// "block[:B=16,O=5]", "centroid[:L2,C=32,I=4,P=8,U=0]", "lsh[:K=8,L=75,T=2,Q=1]", "graph[:R=24,Q=384,N=0,E=8,C=0]",
/// "faiss:HNSW32[,efc=40,ef=64,O=5]", "faiss:IVF[nlist][,nprobe=8,O=5]".
/// </summary>
public static class IndexFactory
{
    /// <summary>The default spec of every family, in the order benchmarks report them.</summary>
    public static IReadOnlyList<string> DefaultSpecs { get; } = ["block", "centroid:L2", "lsh", "graph", "faiss:HNSW32", "faiss:IVF"];

    /// <summary>Creates an empty index for <paramref name="dimension"/>-dimensional keys; throws ArgumentException for a bad spec.</summary>
    public static IKeyIndex Create(string spec, int dimension)
    {
        IndexSpec s = IndexSpec.Parse(spec);
        switch (s.Family)
        {
            case "block":
                s.AllowOnly("B", "O");
                return new BlockSummaryIndex(dimension, s.Int("B", 16), s.Int("O", 5));
            case "centroid":
                s.AllowOnly("L", "C", "I", "P", "U");
                return new CentroidIndex(dimension, s.Int("L", 2), s.Int("C", 32), s.Int("I", 4), s.Int("P", 8), s.Int("U", 0) != 0);
            case "lsh":
                s.AllowOnly("K", "L", "T", "S", "Q", "R");
                return new LshIndex(dimension, s.Int("K", 8), s.Int("L", 75), s.Int("T", 2), (ulong)s.Int("S", 0x51A4), s.Int("Q", 1) != 0, s.Int("R", 100));
            case "graph":
                s.AllowOnly("R", "Q", "N", "E", "C");
                return new AttentionGraphIndex(dimension, s.Int("R", 24), s.Int("Q", 384), s.Int("N", 0), s.Int("E", 8), s.Int("C", 0));
            case "faiss":
                s.AllowOnly("HNSW", "IVF", "efc", "ef", "nprobe", "O");
                if (s.Has("HNSW") == s.Has("IVF"))
                {
                    throw new ArgumentException($"faiss spec \"{spec}\" must name exactly one of HNSW<M> or IVF[<nlist>]");
                }

                return s.Has("HNSW")
                    ? new FaissIndex(dimension, FaissKind.Hnsw, s.Int("HNSW", 32), s.Int("efc", 40), s.Int("ef", 0), s.Int("O", 5))
                    : new FaissIndex(dimension, FaissKind.Ivf, s.Int("IVF", 0), 40, s.Int("nprobe", 0), s.Int("O", 5));
            default:
                throw new ArgumentException($"unknown index family \"{s.Family}\" in \"{spec}\"; known: block, centroid, lsh, graph, faiss");
        }
    }

    /// <summary>
    /// Default search parameters of a family for a context of <paramref name="tokens"/> keys: 2% of them
    /// (at least 64), except LSH, whose collision counts rank coarsely and which MagicPIG runs at a few
    /// percent of tokens anyway: 4%.
    /// </summary>
    public static SearchParameters DefaultParameters(string spec, long tokens)
    {
        SearchParameters defaults = SearchParameters.ForTokens(tokens);
        return IndexSpec.Parse(spec).Family == "lsh"
            ? defaults with { Budget = (int)Math.Min(tokens, 2L * defaults.Budget) }
            : defaults;
    }

    /// <summary>Restores an index written by <see cref="IKeyIndex.Save"/>.</summary>
    public static IKeyIndex Load(Stream stream)
    {
        using BinaryReader r = IndexFormat.Reader(stream);
        (string spec, int dimension) = IndexFormat.ReadHeader(r);
        IKeyIndex index = Create(spec, dimension);
        switch (index)
        {
            case BlockSummaryIndex block:
                block.LoadPayload(r);
                break;
            case CentroidIndex centroid:
                centroid.LoadPayload(r);
                break;
            case LshIndex lsh:
                lsh.LoadPayload(r);
                break;
            case AttentionGraphIndex graph:
                graph.LoadPayload(r);
                break;
            case FaissIndex faiss:
                faiss.LoadPayload(r);
                break;
            default:
                throw new InvalidDataException($"index spec \"{spec}\" has no loader");
        }

        return index;
    }
}

namespace KvDb.Index;

/// <summary>
/// The one place index families are registered: spec name, accepted keys, constructor, file format version and
/// default budget. <see cref="IndexFactory"/> creates and loads through it; nothing else switches on a family.
/// </summary>
public static class IndexFamilies
{
    /// <summary>The payload version of families whose payload never changed.</summary>
    private const int FirstVersion = 1;

    /// <summary>centroid and graph: version 2 keeps the key copy as bf16 (version 1 files held f32 keys).</summary>
    private const int Bf16KeyRowsVersion = 2;

    /// <summary>Every registered family, in the order benchmarks report them.</summary>
    public static IReadOnlyList<IndexFamily> All { get; } =
    [
        new("block", ["B", "O"], FirstVersion,
            (s, d) => new BlockSummaryIndex(d, s.Int("B", 16), s.Int("O", 5)),
            SearchParameters.ForTokens),
        new("centroid", ["L", "C", "I", "P", "U"], Bf16KeyRowsVersion,
            (s, d) => new CentroidIndex(d, s.Int("L", 2), s.Int("C", 32), s.Int("I", 4), s.Int("P", 8), s.Int("U", 0) != 0),
            SearchParameters.ForTokens),

        // LSH collision counts rank coarsely, and MagicPIG runs at a few percent of tokens anyway: twice the budget.
        new("lsh", ["K", "L", "T", "S", "Q", "R"], FirstVersion,
            (s, d) => new LshIndex(d, s.Int("K", 8), s.Int("L", 75), s.Int("T", 2), (ulong)s.Int("S", 0x51A4), s.Int("Q", 1) != 0, s.Int("R", 100)),
            tokens => SearchParameters.ForTokens(tokens) with { Budget = (int)Math.Min(tokens, 2L * SearchParameters.ForTokens(tokens).Budget) }),
        new("graph", ["R", "Q", "N", "E", "C"], Bf16KeyRowsVersion,
            (s, d) => new AttentionGraphIndex(d, s.Int("R", 24), s.Int("Q", 384), s.Int("N", 0), s.Int("E", 8), s.Int("C", 0)),
            SearchParameters.ForTokens),
        new("faiss", ["HNSW", "IVF", "efc", "ef", "nprobe", "O"], FirstVersion, CreateFaiss, SearchParameters.ForTokens),
    ];

    /// <summary>The family named <paramref name="name"/>; ArgumentException naming the known ones otherwise.</summary>
    public static IndexFamily Get(string name)
    {
        foreach (IndexFamily f in All)
        {
            if (f.Name == name)
            {
                return f;
            }
        }

        throw new ArgumentException($"unknown index family \"{name}\"; known: {string.Join(", ", Names())}");
    }

    private static IEnumerable<string> Names()
    {
        foreach (IndexFamily f in All)
        {
            yield return f.Name;
        }
    }

    private static FaissIndex CreateFaiss(IndexSpec s, int dimension)
    {
        if (s.Has("HNSW") == s.Has("IVF"))
        {
            throw new ArgumentException($"faiss spec \"{s.Text}\" must name exactly one of HNSW<M> or IVF[<nlist>]");
        }

        return s.Has("HNSW")
            ? new FaissIndex(dimension, FaissKind.Hnsw, s.Int("HNSW", 32), s.Int("efc", 40), s.Int("ef", 0), s.Int("O", 5))
            : new FaissIndex(dimension, FaissKind.Ivf, s.Int("IVF", 0), 40, s.Int("nprobe", 0), s.Int("O", 5));
    }
}

namespace KvDb.Index;

/// <summary>
/// Two-level k-means (coarse clusters, then fine clusters inside each): the shared clustering step of the
/// centroid index and of the graph's key-neighbour edges. Top-down costs n·(√F + C) distance evaluations
/// per iteration for F fine clusters of about C keys, instead of n·F for flat k-means.
/// </summary>
internal sealed class HierarchicalClustering
{
    private HierarchicalClustering(float[] coarse, int[] fineStart, float[] fine, List<int>[] members)
    {
        Coarse = coarse;
        FineStart = fineStart;
        Fine = fine;
        Members = members;
    }

    /// <summary>Coarse centroids [coarse, dim]; empty with a single level.</summary>
    public float[] Coarse { get; }

    /// <summary>Fine clusters of coarse cluster c are FineStart[c]..FineStart[c+1].</summary>
    public int[] FineStart { get; }

    /// <summary>Fine centroids [fine, dim].</summary>
    public float[] Fine { get; }

    /// <summary>Row ids of each fine cluster (none empty).</summary>
    public List<int>[] Members { get; }

    /// <summary>Clusters rows [n, dim] into fine clusters of about <paramref name="clusterSize"/> rows, under √F coarse ones when <paramref name="levels"/> is 2.</summary>
    public static HierarchicalClustering Build(ReadOnlySpan<float> keys, int n, int dim, int levels, int clusterSize, int iterations, ulong seed)
    {
        int fineTarget = Math.Max(1, (n + clusterSize / 2) / clusterSize);
        var fine = new List<float>();
        var members = new List<List<int>>();
        float[] coarse;
        int[] fineStart;
        if (levels == 1 || fineTarget < 4)
        {
            var assignment = new int[n];
            float[] centroids = KMeans.Train(keys, dim, fineTarget, iterations, seed, assignment);
            AddClusters(dim, centroids, assignment, null, fine, members);
            coarse = [];
            fineStart = [0, members.Count];
        }
        else
        {
            int coarseCount = Math.Max(2, (int)Math.Round(Math.Sqrt(fineTarget)));
            var coarseAssignment = new int[n];
            coarse = KMeans.Train(keys, dim, coarseCount, iterations, seed ^ 0xC0A45E, coarseAssignment);
            coarseCount = coarse.Length / dim;
            var byCoarse = new List<int>[coarseCount];
            for (int c = 0; c < coarseCount; c++)
            {
                byCoarse[c] = [];
            }

            for (int i = 0; i < n; i++)
            {
                byCoarse[coarseAssignment[i]].Add(i);
            }

            fineStart = new int[coarseCount + 1];
            for (int c = 0; c < coarseCount; c++)
            {
                fineStart[c] = members.Count;
                List<int> ids = byCoarse[c];
                if (ids.Count == 0)
                {
                    continue;
                }

                var subset = new float[ids.Count * dim];
                for (int i = 0; i < ids.Count; i++)
                {
                    keys.Slice(ids[i] * dim, dim).CopyTo(subset.AsSpan(i * dim, dim));
                }

                var assignment = new int[ids.Count];
                int k = Math.Max(1, (ids.Count + clusterSize / 2) / clusterSize);
                float[] centroids = KMeans.Train(subset, dim, k, iterations, seed + 0xF1AE + (ulong)c, assignment);
                AddClusters(dim, centroids, assignment, ids, fine, members);
            }

            fineStart[coarseCount] = members.Count;
        }

        return new HierarchicalClustering(coarse, fineStart, [.. fine], [.. members]);
    }

    /// <summary>Appends the non-empty clusters of one k-means run; <paramref name="ids"/> maps local point ids to rows (null = identity).</summary>
    private static void AddClusters(int dim, float[] centroids, int[] assignment, List<int>? ids, List<float> fine, List<List<int>> members)
    {
        int k = centroids.Length / dim;
        var lists = new List<int>[k];
        for (int c = 0; c < k; c++)
        {
            lists[c] = [];
        }

        for (int i = 0; i < assignment.Length; i++)
        {
            lists[assignment[i]].Add(ids is null ? i : ids[i]);
        }

        for (int c = 0; c < k; c++)
        {
            if (lists[c].Count == 0)
            {
                continue;
            }

            for (int j = 0; j < dim; j++)
            {
                fine.Add(centroids[c * dim + j]);
            }

            members.Add(lists[c]);
        }
    }
}

namespace KvDb.Kernels;

/// <summary>
/// A centroid index of one KV head as flat arrays, the form the device search (<c>kvdb_auto_select</c>) reads:
/// coarse cluster c holds fine clusters [<see cref="FineStart"/>[c], FineStart[c + 1]) and
/// <see cref="CoarseMembers"/>[c] keys; fine cluster f holds positions
/// <see cref="Members"/>[<see cref="MemberStart"/>[f] .. MemberStart[f + 1]); <see cref="Outliers"/> are always
/// attended. No member or outlier lies below the sinks (they are attended anyway). Centroids are f32 rows of
/// <see cref="Dimension"/>.
/// </summary>
public sealed record CentroidExport(int Dimension, float[] Coarse, int[] CoarseMembers, int[] FineStart, float[] Fine, int[] MemberStart, int[] Members, int[] Outliers)
{
    /// <summary>Coarse clusters.</summary>
    public int CoarseCount => CoarseMembers.Length;

    /// <summary>Fine clusters.</summary>
    public int FineCount => MemberStart.Length - 1;

    /// <summary>Members of the largest fine cluster.</summary>
    public int LargestCluster
    {
        get
        {
            int largest = 0;
            for (int f = 0; f < FineCount; f++)
            {
                largest = Math.Max(largest, MemberStart[f + 1] - MemberStart[f]);
            }

            return largest;
        }
    }

    /// <summary>
    /// One export of several segments' indexes (each over its own positions): their coarse clusters side by side, so one
    /// search ranks every segment's clusters together.
    /// </summary>
    public static CentroidExport Concat(IReadOnlyList<CentroidExport> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 1)
        {
            return parts[0];
        }

        if (parts.Count == 0)
        {
            throw new ArgumentException("need at least one part", nameof(parts));
        }

        int d = parts[0].Dimension;
        var coarse = new List<float>();
        var coarseMembers = new List<int>();
        var fineStart = new List<int> { 0 };
        var fine = new List<float>();
        var memberStart = new List<int> { 0 };
        var members = new List<int>();
        var outliers = new List<int>();
        foreach (CentroidExport p in parts)
        {
            if (p.Dimension != d)
            {
                throw new ArgumentException("parts differ in dimension", nameof(parts));
            }

            int fineBase = fineStart[^1];
            int memberBase = memberStart[^1];
            coarse.AddRange(p.Coarse);
            coarseMembers.AddRange(p.CoarseMembers);
            for (int c = 1; c < p.FineStart.Length; c++)
            {
                fineStart.Add(fineBase + p.FineStart[c]);
            }

            fine.AddRange(p.Fine);
            for (int f = 1; f < p.MemberStart.Length; f++)
            {
                memberStart.Add(memberBase + p.MemberStart[f]);
            }

            members.AddRange(p.Members);
            outliers.AddRange(p.Outliers);
        }

        return new CentroidExport(d, [.. coarse], [.. coarseMembers], [.. fineStart], [.. fine], [.. memberStart], [.. members], [.. outliers]);
    }

    /// <summary>Throws unless the arrays describe a well-formed index: every range inside its array, counts consistent.</summary>
    public void Validate()
    {
        int cc = CoarseCount;
        int fc = FineCount;
        bool ok = Dimension > 0 && Coarse.Length == cc * Dimension && FineStart.Length == cc + 1 && FineStart[0] == 0 && FineStart[cc] == fc
            && Fine.Length == fc * Dimension && MemberStart[0] == 0 && MemberStart[fc] == Members.Length;
        for (int c = 0; ok && c < cc; c++)
        {
            ok = FineStart[c + 1] >= FineStart[c] && CoarseMembers[c] == MemberStart[FineStart[c + 1]] - MemberStart[FineStart[c]];
        }

        for (int f = 0; ok && f < fc; f++)
        {
            ok = MemberStart[f + 1] >= MemberStart[f];
        }

        if (!ok)
        {
            throw new InvalidOperationException("centroid export is inconsistent");
        }
    }
}

namespace KvDb.Kernels.Cuda;

/// <summary>
/// A layer's centroid index in device memory: one <see cref="CentroidExport"/> per KV head, concatenated with global
/// cluster ids (the layout <c>kvdb_auto_select</c> reads). Uploaded once when the index is ready; immutable after.
/// </summary>
public sealed class DeviceCentroidIndex : IDisposable
{
    /// <summary>Coarse clusters one KV head may have (the device search sorts them in one block).</summary>
    public const int MaxCoarsePerHead = 1024;

    private readonly DeviceBuffer[] _buffers;

    /// <summary>Uploads <paramref name="heads"/> (KV head h's index at h) covering positions [0, <paramref name="indexedTokens"/>).</summary>
    public DeviceCentroidIndex(IReadOnlyList<CentroidExport> heads, long indexedTokens, int device = 0)
    {
        ArgumentNullException.ThrowIfNull(heads);
        if (heads.Count == 0 || indexedTokens < 0 || indexedTokens > int.MaxValue - 65536)
        {
            throw new ArgumentException("need one export per KV head and 0 ≤ indexedTokens < 2³¹ − 65536");
        }

        int d = heads[0].Dimension;
        int h = heads.Count;
        var coarseStart = new int[h + 1];
        var fineHeadStart = new int[h + 1];
        var outlierStart = new int[h + 1];
        long memberTotal = 0;
        for (int i = 0; i < h; i++)
        {
            CentroidExport e = heads[i];
            e.Validate();
            if (e.Dimension != d || e.CoarseCount > MaxCoarsePerHead)
            {
                throw new ArgumentException($"KV head {i}: dimension {e.Dimension} (expected {d}), {e.CoarseCount} coarse clusters (at most {MaxCoarsePerHead})");
            }

            coarseStart[i + 1] = coarseStart[i] + e.CoarseCount;
            fineHeadStart[i + 1] = fineHeadStart[i] + e.FineCount;
            outlierStart[i + 1] = checked(outlierStart[i] + e.Outliers.Length);
            memberTotal += e.Members.Length;
            LargestCluster = Math.Max(LargestCluster, e.LargestCluster);
            MaxOutliers = Math.Max(MaxOutliers, e.Outliers.Length);
        }

        int coarseTotal = coarseStart[h];
        int fineTotal = fineHeadStart[h];
        var coarse = new float[(long)coarseTotal * d];
        var coarseMembers = new int[coarseTotal];
        var fineStart = new int[coarseTotal + 1];
        var fine = new float[(long)fineTotal * d];
        var memberStart = new int[fineTotal + 1];
        var members = new int[checked((int)memberTotal)];
        var outliers = new int[Math.Max(1, outlierStart[h])];
        int memberBase = 0;
        for (int i = 0; i < h; i++)
        {
            CentroidExport e = heads[i];
            e.Coarse.CopyTo(coarse, (long)coarseStart[i] * d);
            e.CoarseMembers.CopyTo(coarseMembers, coarseStart[i]);
            for (int c = 0; c < e.CoarseCount; c++)
            {
                fineStart[coarseStart[i] + c + 1] = fineHeadStart[i] + e.FineStart[c + 1];
            }

            e.Fine.CopyTo(fine, (long)fineHeadStart[i] * d);
            for (int f = 0; f < e.FineCount; f++)
            {
                memberStart[fineHeadStart[i] + f + 1] = memberBase + e.MemberStart[f + 1];
            }

            e.Members.CopyTo(members, memberBase);
            memberBase += e.Members.Length;
            foreach (int p in e.Members)
            {
                CheckPosition(p, indexedTokens);
            }

            foreach (int p in e.Outliers)
            {
                CheckPosition(p, indexedTokens);
            }

            e.Outliers.CopyTo(outliers, outlierStart[i]);
        }

        for (int i = 0; i < h; i++)
        {
            fineStart[coarseStart[i]] = fineHeadStart[i];
        }

        var buffers = new List<DeviceBuffer>();
        try
        {
            nint Up<T>(T[] data)
                where T : unmanaged
            {
                T[] nonEmpty = data.Length > 0 ? data : new T[1];
                var b = new DeviceBuffer(System.Runtime.CompilerServices.Unsafe.SizeOf<T>() * (long)nonEmpty.Length, device);
                buffers.Add(b);
                b.Upload<T>(nonEmpty);
                return b.Pointer;
            }

            Layout = new KvdbCentroidLayout
            {
                Coarse = Up(coarse),
                CoarseMembers = Up(coarseMembers),
                FineStart = Up(fineStart),
                Fine = Up(fine),
                MemberStart = Up(memberStart),
                Members = Up(members),
                Outliers = Up(outliers),
                CoarseStart = Up(coarseStart),
                FineHeadStart = Up(fineHeadStart),
                OutlierStart = Up(outlierStart),
                IndexedTokens = indexedTokens,
            };
        }
        catch
        {
            foreach (DeviceBuffer b in buffers)
            {
                b.Dispose();
            }

            throw;
        }

        _buffers = [.. buffers];
        KvHeads = h;
        Dimension = d;
        IndexedTokens = indexedTokens;
        FineCount = fineTotal;
        foreach (DeviceBuffer b in _buffers)
        {
            DeviceBytes += b.Bytes;
        }
    }

    /// <summary>KV heads.</summary>
    public int KvHeads { get; }

    /// <summary>Key dimension.</summary>
    public int Dimension { get; }

    /// <summary>Positions [0, IndexedTokens) are indexed.</summary>
    public long IndexedTokens { get; }

    /// <summary>Fine clusters of all KV heads.</summary>
    public int FineCount { get; }

    /// <summary>Members of the largest fine cluster of any KV head.</summary>
    public int LargestCluster { get; }

    /// <summary>Most outliers of any KV head.</summary>
    public int MaxOutliers { get; }

    /// <summary>Device memory the index holds.</summary>
    public long DeviceBytes { get; }

    internal KvdbCentroidLayout Layout { get; }

    /// <summary>Frees the device memory.</summary>
    public void Dispose()
    {
        foreach (DeviceBuffer b in _buffers)
        {
            b.Dispose();
        }
    }

    private static void CheckPosition(int position, long indexedTokens)
    {
        if (position < 0 || position >= indexedTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(position), position, $"indexed positions must lie in [0, {indexedTokens})");
        }
    }
}

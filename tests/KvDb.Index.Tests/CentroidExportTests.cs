using KvDb.Kernels;
using KvDb.TestKit;

namespace KvDb.Index.Tests;

/// <summary>
/// The centroid index exported as flat arrays for the device search (<see cref="CentroidIndex.Export"/>): a partition of
/// the indexed positions past the sinks, and the search the device runs over it (coarse best-first until P·perRow keys
/// are probed, fine best-first until perRow are named) names the keys the CPU search names.
/// </summary>
[Collection(WorkloadCollection.Name)]
public sealed class CentroidExportTests
{
    private const int Sinks = 4;
    private readonly WorkloadFixture _fixture;

    public CentroidExportTests(WorkloadFixture fixture)
    {
        _fixture = fixture;
    }

    [Fact]
    public void Export_partitions_the_positions_past_the_sinks()
    {
        var index = (CentroidIndex)_fixture.Index("centroid:L2", 0);
        CentroidExport e = index.Export(Sinks);
        e.Validate();
        Assert.Equal(128, e.Dimension);
        Assert.Equal(index.CoarseCount, e.CoarseCount);
        Assert.Equal(index.FineCount, e.FineCount);
        var seen = new int[WorkloadFixture.Tokens];
        foreach (int p in e.Members)
        {
            seen[p]++;
        }

        foreach (int p in e.Outliers)
        {
            seen[p]++;
        }

        for (int p = 0; p < WorkloadFixture.Tokens; p++)
        {
            Assert.Equal(p < Sinks ? 0 : 1, seen[p]);
        }

        Assert.True(e.Outliers.Length > 0);
        long coarseMembers = 0;
        foreach (int c in e.CoarseMembers)
        {
            coarseMembers += c;
        }

        Assert.Equal(e.Members.Length, coarseMembers);
    }

    [Fact]
    public void The_device_search_over_the_export_names_what_the_cpu_search_names()
    {
        IndexQualityHarness h = _fixture.Harness;
        int d = h.Dimension;
        const int perRow = 256;
        foreach (int kv in h.KvHeads)
        {
            var index = (CentroidIndex)_fixture.Index("centroid:L2", kv);
            CentroidExport e = index.Export(Sinks);
            for (int qi = 0; qi < 4; qi++)
            {
                ReadOnlySpan<float> q = h.Queries(kv).AsSpan(qi * d, d);
                var cpu = new long[index.MaxHeavyHitters(1, perRow)];
                int count = index.HeavyHitters(q, 1, perRow, cpu, out _);
                var expected = new HashSet<long>();
                for (int i = 0; i < count; i++)
                {
                    if (cpu[i] >= Sinks)
                    {
                        expected.Add(cpu[i]);
                    }
                }

                HashSet<long> replay = DeviceSearch(e, q, d, perRow, probeMembers: 8 * perRow);
                int both = 0;
                foreach (long p in replay)
                {
                    both += expected.Contains(p) ? 1 : 0;
                }

                double jaccard = (double)both / (expected.Count + replay.Count - both);
                Assert.True(jaccard >= 0.95, $"head {kv} query {qi}: jaccard {jaccard:F3} ({replay.Count} vs {expected.Count})");
            }
        }
    }

    [Fact]
    public void Concat_keeps_each_part_and_offsets_its_ids()
    {
        var a = (CentroidIndex)_fixture.Index("centroid:L2", 0);
        var b = (CentroidIndex)_fixture.Index("centroid:L2", 1);
        CentroidExport ea = a.Export(Sinks);
        CentroidExport eb = b.Export(Sinks);
        CentroidExport both = CentroidExport.Concat([ea, eb]);
        both.Validate();
        Assert.Equal(ea.CoarseCount + eb.CoarseCount, both.CoarseCount);
        Assert.Equal(ea.FineCount + eb.FineCount, both.FineCount);
        Assert.Equal(ea.Members.Length + eb.Members.Length, both.Members.Length);
        Assert.Equal(ea.FineCount + eb.FineStart[1], both.FineStart[ea.CoarseCount + 1]);
        Assert.Equal(eb.Members[0], both.Members[ea.Members.Length]);
    }

    /// <summary>The rule kvdb_auto_select runs (src/Kernels/native/cuda/kvdb_auto.cu), over one row, in plain C#.</summary>
    private static HashSet<long> DeviceSearch(CentroidExport e, ReadOnlySpan<float> q, int d, int perRow, int probeMembers)
    {
        var coarse = new (float Score, int Id)[e.CoarseCount];
        for (int c = 0; c < coarse.Length; c++)
        {
            coarse[c] = (Dot(q, e.Coarse.AsSpan(c * d, d)), c);
        }

        Array.Sort(coarse, (x, y) => y.Score.CompareTo(x.Score));
        var fine = new List<(float Score, int Id)>();
        long probed = 0;
        foreach ((_, int c) in coarse)
        {
            for (int f = e.FineStart[c]; f < e.FineStart[c + 1]; f++)
            {
                fine.Add((Dot(q, e.Fine.AsSpan(f * d, d)), f));
            }

            probed += e.CoarseMembers[c];
            if (probed >= probeMembers)
            {
                break;
            }
        }

        fine.Sort((x, y) => y.Score.CompareTo(x.Score));
        var named = new HashSet<long>();
        int count = 0;
        foreach ((_, int f) in fine)
        {
            if (count >= perRow)
            {
                break;
            }

            for (int m = e.MemberStart[f]; m < e.MemberStart[f + 1]; m++)
            {
                named.Add(e.Members[m]);
            }

            count += e.MemberStart[f + 1] - e.MemberStart[f];
        }

        foreach (int p in e.Outliers)
        {
            named.Add(p);
        }

        return named;
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float s = 0;
        for (int i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }

        return s;
    }
}

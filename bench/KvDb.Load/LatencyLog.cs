namespace KvDb.Load;

/// <summary>One engine's latencies in milliseconds, per call kind; never shared between threads.</summary>
public sealed class LatencyLog
{
    private readonly List<double>[] _byKind = CreateLists();

    /// <summary>Records one successful call.</summary>
    public void Add(CallKind kind, double milliseconds) => _byKind[(int)kind].Add(milliseconds);

    /// <summary>The latencies of <paramref name="kind"/> of every log, sorted ascending.</summary>
    public static double[] Merged(IEnumerable<LatencyLog> logs, CallKind kind)
    {
        var all = new List<double>();
        foreach (LatencyLog log in logs)
        {
            all.AddRange(log._byKind[(int)kind]);
        }

        double[] sorted = [.. all];
        Array.Sort(sorted);
        return sorted;
    }

    /// <summary>The <paramref name="p"/>-quantile (0..1) of sorted values, nearest rank; 0 for none.</summary>
    public static double Quantile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static List<double>[] CreateLists()
    {
        var lists = new List<double>[Enum.GetValues<CallKind>().Length];
        for (int i = 0; i < lists.Length; i++)
        {
            lists[i] = [];
        }

        return lists;
    }
}

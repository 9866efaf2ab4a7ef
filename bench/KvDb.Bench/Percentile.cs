namespace KvDb.Bench;

/// <summary>Order statistics of timing samples.</summary>
internal static class Percentile
{
    /// <summary>The median: robust to the odd sample a GC or a noisy neighbour inflates.</summary>
    public static double Median(double[] samples)
    {
        double[] sorted = (double[])samples.Clone();
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }

    /// <summary>The <paramref name="quantile"/> (0–1) by the nearest rank.</summary>
    public static double Of(double[] samples, double quantile)
    {
        double[] sorted = (double[])samples.Clone();
        Array.Sort(sorted);
        int rank = (int)Math.Ceiling(quantile * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}

namespace KvDb.Kernels.Tests;

/// <summary>Error measures between a kernel's f32 results and the f64 reference.</summary>
internal static class Accuracy
{
    /// <summary>
    /// Worst relative L2 error over the (query token, head) rows of an output, so one bad head cannot hide
    /// behind many good ones. A row whose reference is exactly zero is judged by its absolute norm.
    /// </summary>
    public static double MaxRowRelL2(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, int headDim)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int row = 0; row < expected.Length; row += headDim)
        {
            double err = 0;
            double norm = 0;
            for (int i = row; i < row + headDim; i++)
            {
                double diff = actual[i] - expected[i];
                err += diff * diff;
                norm += expected[i] * expected[i];
            }

            // NaN must fail the comparison rather than vanish in Math.Max.
            double rel = norm > 0 ? Math.Sqrt(err / norm) : Math.Sqrt(err);
            worst = double.IsNaN(rel) || double.IsNaN(worst) ? double.NaN : Math.Max(worst, rel);
        }

        return worst;
    }

    /// <summary>Largest absolute LSE error; two −∞ agree exactly, any other non-finite value is an infinite error.</summary>
    public static double MaxLseError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (double.IsNegativeInfinity(expected[i]) && float.IsNegativeInfinity(actual[i]))
            {
                continue;
            }

            double err = Math.Abs(actual[i] - expected[i]);
            worst = double.IsFinite(err) ? Math.Max(worst, err) : double.PositiveInfinity;
        }

        return worst;
    }

    /// <summary>Largest LSE error relative to the LSE's own magnitude, for scores far from 1.</summary>
    public static double MaxLseRelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]) / Math.Max(1, Math.Abs(expected[i]));
            worst = double.IsFinite(err) ? Math.Max(worst, err) : double.PositiveInfinity;
        }

        return worst;
    }
}

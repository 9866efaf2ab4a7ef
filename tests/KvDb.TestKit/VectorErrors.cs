namespace KvDb.TestKit;

/// <summary>
/// Error measures between two f32 results (a fast path against another fast path); against the f64
/// reference use <see cref="Workload.ReferenceAttention.RelativeL2"/> and <see cref="Workload.ReferenceAttention.MaxAbsError"/>.
/// </summary>
public static class VectorErrors
{
    /// <summary>‖a − b‖₂ / ‖b‖₂ in f64 (the absolute ‖a − b‖₂ when b is zero), as <see cref="Workload.ReferenceAttention.RelativeL2"/> computes it.</summary>
    public static double RelativeL2(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double num = 0;
        double den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double diff = (double)actual[i] - expected[i];
            num += diff * diff;
            den += (double)expected[i] * expected[i];
        }

        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }
}

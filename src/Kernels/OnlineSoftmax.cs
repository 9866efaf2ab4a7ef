using System.Numerics.Tensors;

namespace KvDb.Kernels;

/// <summary>
/// The running-max step of online softmax, shared by the portable kernels: when a new chunk raises a
/// row's max, the row's sum and accumulator are rescaled by exp(old − new) so earlier rows keep their
/// relative weight. Unsafe: the pointers address the caller's scratch rows, valid for the call.
/// </summary>
internal static unsafe class OnlineSoftmax
{
    /// <summary>Raises row <paramref name="r"/>'s max to at least <paramref name="chunkMax"/> and returns the new max.</summary>
    public static float Raise(float* max, float* sum, float* acc, int r, int d, float chunkMax)
    {
        float newMax = Math.Max(max[r], chunkMax);
        if (newMax > max[r])
        {
            float factor = MathF.Exp(max[r] - newMax);
            sum[r] *= factor;
            var ar = new Span<float>(acc + ((long)r * d), d);
            TensorPrimitives.Multiply(ar, factor, ar);
            max[r] = newMax;
        }

        return newMax;
    }
}

using System.Runtime.Intrinsics;

namespace KvDb.Kernels.Tests;

public class VectorExpTests
{
    [Fact]
    public void MatchesMathExp_OverTheSoftmaxRange()
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            return;
        }

        // Softmax arguments are score − max ≤ 0; sweep them densely down to the underflow clamp and a bit past 0.
        var xs = new float[16];
        double worst = 0;
        for (int i = 0; i < 200_000; i++)
        {
            xs[i % 16] = -88f + (i * (90f / 200_000));
            if (i % 16 != 15)
            {
                continue;
            }

            Vector512<float> e = VectorExp.Exp(Vector512.Create(xs));
            for (int k = 0; k < 16; k++)
            {
                double expected = Math.Exp(Math.Max(xs[k], -87.33654));
                worst = Math.Max(worst, Math.Abs(e[k] - expected) / expected);
            }
        }

        Assert.InRange(worst, 0, 3e-7);
    }

    [Fact]
    public void HandlesSpecialValues()
    {
        if (!Vector512.IsHardwareAccelerated)
        {
            return;
        }

        Vector512<float> e = VectorExp.Exp(Vector512.Create(0f, -0f, float.NegativeInfinity, -1e30f, float.NaN, 1f, -1f, 88f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f));
        Assert.Equal(1f, e[0]);
        Assert.Equal(1f, e[1]);
        Assert.InRange(e[2], 0f, 1.2e-38f);
        Assert.InRange(e[3], 0f, 1.2e-38f);
        Assert.True(float.IsNaN(e[4]));
        Assert.Equal(MathF.E, e[5], 6);
        Assert.Equal(1 / MathF.E, e[6], 6);
        Assert.True(float.IsFinite(e[7]));
    }

    /// <summary>The Vector256 overload the AVX2 fused loops use: the same sweep, lane for lane equal to the Vector512 one.</summary>
    [Fact]
    public void Vector256_MatchesMathExp_OverTheSoftmaxRange()
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            return;
        }

        var xs = new float[8];
        double worst = 0;
        for (int i = 0; i < 200_000; i++)
        {
            xs[i % 8] = -88f + (i * (90f / 200_000));
            if (i % 8 != 7)
            {
                continue;
            }

            Vector256<float> e = VectorExp.Exp(Vector256.Create(xs));
            for (int k = 0; k < 8; k++)
            {
                double expected = Math.Exp(Math.Max(xs[k], -87.33654));
                worst = Math.Max(worst, Math.Abs(e[k] - expected) / expected);
            }
        }

        Assert.InRange(worst, 0, 3e-7);
    }

    [Fact]
    public void Vector256_HandlesSpecialValues()
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            return;
        }

        Vector256<float> e = VectorExp.Exp(Vector256.Create(0f, -0f, float.NegativeInfinity, -1e30f, float.NaN, 1f, -1f, 88f));
        Assert.Equal(1f, e[0]);
        Assert.Equal(1f, e[1]);
        Assert.InRange(e[2], 0f, 1.2e-38f);
        Assert.InRange(e[3], 0f, 1.2e-38f);
        Assert.True(float.IsNaN(e[4]));
        Assert.Equal(MathF.E, e[5], 6);
        Assert.Equal(1 / MathF.E, e[6], 6);
        Assert.True(float.IsFinite(e[7]));
    }
}

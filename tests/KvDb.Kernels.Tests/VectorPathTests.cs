using System.Runtime.Intrinsics;

namespace KvDb.Kernels.Tests;

/// <summary>Proves which SIMD width the kernels run with, so the AVX2 re-run in CI really exercises the Vector256 paths.</summary>
public sealed class VectorPathTests
{
    [Fact]
    public void Vector512_follows_the_EnableAVX512_switch()
    {
        // .NET 10 reads DOTNET_EnableAVX512; the older DOTNET_EnableAVX512F no longer turns Vector512 off.
        string? flag = Environment.GetEnvironmentVariable("DOTNET_EnableAVX512");
        if (flag == "0")
        {
            Assert.False(Vector512.IsHardwareAccelerated);
        }

        Assert.True(Vector256.IsHardwareAccelerated || !Vector512.IsHardwareAccelerated);
    }

    /// <summary>
    /// Without AVX-512, a machine with AVX2 + FMA must still take the fused loops (their Vector256 form), so the
    /// exact-attention tests of the AVX2 re-run cover them rather than the portable path.
    /// </summary>
    [Fact]
    public void Fused_loops_run_with_AVX2_and_FMA()
    {
        bool expected = Vector512.IsHardwareAccelerated
            || (Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported);
        Assert.Equal(expected, AttentionSegment.FusedSupported(128));
        Assert.False(AttentionSegment.FusedSupported(40));
    }
}

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
}

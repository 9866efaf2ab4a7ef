using System.Reflection;

namespace KvDb.Architecture.Tests;

/// <summary>What a client loads (KvDb.Client, KvDb.Protocol, KvDb.Core) is plain managed code: no unsafe, no P/Invoke, no native loading.</summary>
public class PurityTests
{
    public static TheoryData<string> ClientSide() => [DependencyRules.Core, DependencyRules.Protocol, DependencyRules.Client];

    [Theory]
    [MemberData(nameof(ClientSide))]
    public void ClientSideAssembly_HasNoUnsafeCode(string name)
    {
        Assert.False(Purity.HasUnverifiableCode(Load(name)), $"{name} is built with AllowUnsafeBlocks (its module carries UnverifiableCodeAttribute)");
    }

    [Theory]
    [MemberData(nameof(ClientSide))]
    public void ClientSideAssembly_HasNoPInvoke(string name)
    {
        IReadOnlyList<string> methods = Purity.PInvokeMethods(Load(name));
        Assert.True(methods.Count == 0, $"{name} declares P/Invoke methods: {string.Join(", ", methods)}");
    }

    [Theory]
    [MemberData(nameof(ClientSide))]
    public void ClientSideAssembly_LoadsNoNativeLibrary(string name)
    {
        Assert.False(Purity.ReferencesNativeLibrary(Load(name)), $"{name} references System.Runtime.InteropServices.NativeLibrary");
    }

    /// <summary>
    /// The detectors can fail: KvDb.Kernels (unsafe SIMD, the CUDA library loaded by hand through function pointers)
    /// and KvDb.Index (the Faiss shim's DllImports) trip them.
    /// </summary>
    [Fact]
    public void Detectors_FlagKernelsAndIndex()
    {
        Assembly kernels = Load(DependencyRules.Kernels);
        Assert.True(Purity.HasUnverifiableCode(kernels));
        Assert.True(Purity.ReferencesNativeLibrary(kernels));
        Assert.Contains(Purity.PInvokeMethods(Load(DependencyRules.Index)), m => m.StartsWith("KvDb.Index.FaissNativeMethods.", StringComparison.Ordinal));
    }

    private static Assembly Load(string name) => Assembly.Load(new AssemblyName(name));
}

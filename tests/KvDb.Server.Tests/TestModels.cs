using KvDb.Kernels;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Server.Tests;

/// <summary>Small models and synthetic K/V for end-to-end tests.</summary>
internal static class TestModels
{
    public static Model Small(string name, DType dtype = DType.F32) => new()
    {
        Name = name,
        NumLayers = 2,
        NumQueryHeads = 8,
        NumKvHeads = 2,
        HeadDim = 32,
        Dtype = dtype,
        BlockSize = 16,
    };

    public static SyntheticWorkload Workload(Model m, int tokens, int layer) => new(new SyntheticWorkloadOptions
    {
        Tokens = tokens,
        NumKvHeads = m.NumKvHeads,
        NumQueryHeads = m.NumQueryHeads,
        HeadDim = m.HeadDim,
        KeyRank = 8,
        SinkTokens = 2,
        NeedlesPerHead = 2,
        RecentWindow = 16,
        Layer = layer,
        Seed = 7,
    });

    public static KvDType Kernel(DType d) => d switch
    {
        DType.F16 => KvDType.F16,
        DType.Bf16 => KvDType.BF16,
        _ => KvDType.F32,
    };
}

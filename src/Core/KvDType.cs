namespace KvDb.Core;

/// <summary>Element type of stored keys/values and of wire tensors; numbering matches kvdb.v1.DType.</summary>
public enum KvDType
{
    /// <summary>Not set; never valid for stored data.</summary>
    Unspecified = 0,
    /// <summary>IEEE 754 binary32.</summary>
    F32 = 1,
    /// <summary>IEEE 754 binary16.</summary>
    F16 = 2,
    /// <summary>bfloat16: the upper half of a binary32.</summary>
    BF16 = 3,
}

/// <summary>Sizes and names of <see cref="KvDType"/> values.</summary>
public static class KvDTypeInfo
{
    /// <summary>Bytes per element, or 0 for <see cref="KvDType.Unspecified"/> and unknown values.</summary>
    public static int SizeOf(KvDType dtype) => dtype switch
    {
        KvDType.F32 => 4,
        KvDType.F16 => 2,
        KvDType.BF16 => 2,
        _ => 0,
    };

    /// <summary>True for the three element types KvDb stores and computes with.</summary>
    public static bool IsSupported(KvDType dtype) => SizeOf(dtype) != 0;

    /// <summary>The lower-case wire name, e.g. "bf16".</summary>
    public static string Name(KvDType dtype) => dtype switch
    {
        KvDType.F32 => "f32",
        KvDType.F16 => "f16",
        KvDType.BF16 => "bf16",
        _ => "unspecified",
    };
}

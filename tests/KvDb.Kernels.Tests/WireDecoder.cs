namespace KvDb.Kernels.Tests;

/// <summary>
/// Scalar decoding of wire bytes to f32, independent of <see cref="ElementConversion"/>, so the reference
/// sees exactly the dtype-rounded values the kernel reads without trusting the code under test to decode them.
/// </summary>
internal static class WireDecoder
{
    public static float[] Decode(KvDType dtype, ReadOnlySpan<byte> bytes)
    {
        int size = KvDTypeInfo.SizeOf(dtype);
        var result = new float[bytes.Length / size];
        for (int i = 0; i < result.Length; i++)
        {
            ReadOnlySpan<byte> e = bytes.Slice(i * size, size);
            result[i] = dtype switch
            {
                KvDType.F32 => BitConverter.ToSingle(e),
                KvDType.F16 => (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(e)),
                KvDType.BF16 => BitConverter.UInt32BitsToSingle((uint)BitConverter.ToUInt16(e) << 16),
                _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
            };
        }

        return result;
    }
}

using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KvDb.Core;

/// <summary>Widening of stored f16/bf16/f32 elements to f32 and narrowing back, vectorized.</summary>
public static class ElementConversion
{
    /// <summary>Widens <paramref name="count"/> elements of <paramref name="dtype"/> at <paramref name="source"/> into <paramref name="destination"/>.</summary>
    public static void ToSingle(KvDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case KvDType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case KvDType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case KvDType.BF16:
                BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "dtype must be f32, f16 or bf16");
        }
    }

    /// <summary>bf16 is the top 16 bits of an f32, so widening is a zero-extend and a 16-bit shift.</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length)
        {
            throw new ArgumentException("destination is shorter than source", nameof(destination));
        }

        ref ushort src = ref MemoryMarshal.GetReference(source);
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(destination));
        int n = source.Length;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<ushort>.Count; i += Vector512<ushort>.Count)
            {
                (Vector512<uint> lo, Vector512<uint> hi) = Vector512.Widen(Vector512.LoadUnsafe(ref src, (nuint)i));
                Vector512.ShiftLeft(lo, 16).StoreUnsafe(ref dst, (nuint)i);
                Vector512.ShiftLeft(hi, 16).StoreUnsafe(ref dst, (nuint)(i + Vector512<uint>.Count));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                Vector256.ShiftLeft(lo, 16).StoreUnsafe(ref dst, (nuint)i);
                Vector256.ShiftLeft(hi, 16).StoreUnsafe(ref dst, (nuint)(i + Vector256<uint>.Count));
            }
        }

        for (; i < n; i++)
        {
            Unsafe.Add(ref dst, i) = (uint)Unsafe.Add(ref src, i) << 16;
        }
    }

    /// <summary>Narrows f32 to bf16 with round-to-nearest-even (what PyTorch and CUDA do); NaN stays NaN.</summary>
    public static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = SingleToBFloat16(source[i]);
        }
    }

    /// <summary>Narrows one f32 to bf16 with round-to-nearest-even.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }

        uint rounding = ((bits >> 16) & 1u) + 0x7FFFu;
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Widens one bf16 to f32.</summary>
    public static float BFloat16ToSingle(ushort value) => BitConverter.UInt32BitsToSingle((uint)value << 16);

    /// <summary>Encodes f32 values as raw little-endian bytes of <paramref name="dtype"/>.</summary>
    public static void FromSingle(KvDType dtype, ReadOnlySpan<float> source, Span<byte> destination)
    {
        switch (dtype)
        {
            case KvDType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                break;
            case KvDType.F16:
                TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination));
                break;
            case KvDType.BF16:
                SingleToBFloat16(source, MemoryMarshal.Cast<byte, ushort>(destination));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "dtype must be f32, f16 or bf16");
        }
    }

    /// <summary>Encodes f32 values as a new byte array of <paramref name="dtype"/>.</summary>
    public static byte[] FromSingle(KvDType dtype, ReadOnlySpan<float> source)
    {
        var bytes = new byte[source.Length * KvDTypeInfo.SizeOf(dtype)];
        FromSingle(dtype, source, bytes);
        return bytes;
    }

    /// <summary>Decodes raw bytes of <paramref name="dtype"/> into a new f32 array.</summary>
    public static float[] ToSingle(KvDType dtype, ReadOnlySpan<byte> source)
    {
        var values = new float[source.Length / KvDTypeInfo.SizeOf(dtype)];
        ToSingle(dtype, source, values);
        return values;
    }
}

using KvDb.Kernels.Tests;

namespace KvDb.Core.Tests;

public class ElementConversionTests
{
    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)] // 1.0 is exact
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below half an ulp: down
    [InlineData(0x3F808000u, (ushort)0x3F80)] // tie, even mantissa: stays
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above half: up
    [InlineData(0x3F818000u, (ushort)0x3F82)] // tie, odd mantissa: up to even
    [InlineData(0xBF818000u, (ushort)0xBF82)] // sign does not change the rounding
    [InlineData(0x3FFF8000u, (ushort)0x4000)] // carry into the exponent
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // float.MaxValue rounds to +inf
    [InlineData(0x7F800000u, (ushort)0x7F80)] // +inf
    [InlineData(0xFF800000u, (ushort)0xFF80)] // -inf
    [InlineData(0x80000000u, (ushort)0x8000)] // -0
    [InlineData(0x00000001u, (ushort)0x0000)] // smallest subnormal rounds to 0
    [InlineData(0x00018000u, (ushort)0x0002)] // subnormal tie, odd: up
    public void SingleToBFloat16_RoundsToNearestEven(uint bits, ushort expected)
    {
        Assert.Equal(expected, ElementConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(bits)));
    }

    [Theory]
    [InlineData(0x7FC00000u)] // quiet NaN
    [InlineData(0x7F800001u)] // signaling NaN whose payload lives only in the low half: truncation would make it +inf
    [InlineData(0xFF800001u)]
    [InlineData(0x7FFFFFFFu)] // rounding would carry out of the exponent
    [InlineData(0xFFFFFFFFu)]
    public void SingleToBFloat16_KeepsNaN(uint bits)
    {
        float nan = BitConverter.UInt32BitsToSingle(bits);
        ushort narrowed = ElementConversion.SingleToBFloat16(nan);

        Assert.True(float.IsNaN(ElementConversion.BFloat16ToSingle(narrowed)), $"0x{bits:X8} became 0x{narrowed:X4}");
        Assert.Equal(bits >> 31, (uint)narrowed >> 15);
    }

    [Fact]
    public void SingleToBFloat16_IsNearestEven_ForRandomBitPatterns()
    {
        var rng = new Random(1234);
        for (int i = 0; i < 200_000; i++)
        {
            uint bits = (uint)rng.NextInt64(0, 1L << 32);
            float x = BitConverter.UInt32BitsToSingle(bits);
            if (!float.IsFinite(x))
            {
                continue;
            }

            ushort narrowed = ElementConversion.SingleToBFloat16(x);

            // The two bf16 values bracketing x (by truncation and truncation + 1 ulp, toward larger magnitude).
            ushort down = (ushort)(bits >> 16);
            ushort up = (ushort)(down + 1);
            double dDown = Math.Abs((double)x - ElementConversion.BFloat16ToSingle(down));
            double upValue = ElementConversion.BFloat16ToSingle(up);

            // Past the largest bf16 the next step is ±2^128; IEEE rounds to infinity from its halfway point.
            if (double.IsInfinity(upValue))
            {
                upValue = Math.CopySign(Math.Pow(2, 128), x);
            }

            double dUp = Math.Abs(x - upValue);
            ushort expected = dDown < dUp ? down : dUp < dDown ? up : (down & 1) == 0 ? down : up;
            Assert.Equal(expected, narrowed);
        }
    }

    [Fact]
    public void BFloat16ToSingle_WidensExactly_ForEveryBitPattern()
    {
        for (int b = 0; b <= ushort.MaxValue; b++)
        {
            float wide = ElementConversion.BFloat16ToSingle((ushort)b);
            Assert.Equal((uint)b << 16, BitConverter.SingleToUInt32Bits(wide));
            if (!float.IsNaN(wide))
            {
                Assert.Equal((ushort)b, ElementConversion.SingleToBFloat16(wide));
            }
        }
    }

    [Fact]
    public void BFloat16ToSingle_VectorPathMatchesScalar_ForLengths0To100()
    {
        var rng = new Random(99);
        for (int n = 0; n <= 100; n++)
        {
            // One element of slack on each side catches writes outside the requested range.
            var source = new ushort[n];
            for (int i = 0; i < n; i++)
            {
                source[i] = (ushort)rng.Next(0, 65536);
            }

            var destination = new float[n + 2];
            destination[0] = 42f;
            destination[^1] = 42f;
            ElementConversion.BFloat16ToSingle(source, destination.AsSpan(1, n));

            Assert.Equal(42f, destination[0]);
            Assert.Equal(42f, destination[^1]);
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(BitConverter.SingleToUInt32Bits(ElementConversion.BFloat16ToSingle(source[i])), BitConverter.SingleToUInt32Bits(destination[i + 1]));
            }
        }
    }

    [Fact]
    public void BFloat16ToSingle_RejectsShortDestination()
    {
        Assert.Throws<ArgumentException>(() => ElementConversion.BFloat16ToSingle(new ushort[5], new float[4]));
    }

    [Fact]
    public void F16_RoundTripsEveryBitPattern()
    {
        var bytes = new byte[65536 * 2];
        for (int b = 0; b <= ushort.MaxValue; b++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(b * 2), (ushort)b);
        }

        float[] wide = ElementConversion.ToSingle(KvDType.F16, bytes);
        byte[] back = ElementConversion.FromSingle(KvDType.F16, wide);

        for (int b = 0; b <= ushort.MaxValue; b++)
        {
            Half h = BitConverter.UInt16BitsToHalf((ushort)b);
            ushort roundTripped = BitConverter.ToUInt16(back, b * 2);
            if (Half.IsNaN(h))
            {
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(roundTripped)));
                Assert.True(float.IsNaN(wide[b]));
            }
            else
            {
                Assert.Equal((float)h, wide[b]);
                Assert.Equal((ushort)b, roundTripped);
            }
        }
    }

    [Fact]
    public void F16_NarrowingMatchesHalfCast()
    {
        var rng = new Random(5);
        var values = new float[10_000];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-30, 20)));
        }

        byte[] narrowed = ElementConversion.FromSingle(KvDType.F16, values);
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)values[i]), BitConverter.ToUInt16(narrowed, i * 2));
        }
    }

    [Theory]
    [InlineData(KvDType.F32)]
    [InlineData(KvDType.F16)]
    [InlineData(KvDType.BF16)]
    public void ToSingle_AgreesWithScalarDecoder(KvDType dtype)
    {
        var rng = new Random(17);
        var bytes = new byte[KvDTypeInfo.SizeOf(dtype) * 1001];
        rng.NextBytes(bytes);

        float[] decoded = ElementConversion.ToSingle(dtype, bytes);
        float[] expected = WireDecoder.Decode(dtype, bytes);

        Assert.Equal(expected.Length, decoded.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(decoded[i]) || (float.IsNaN(expected[i]) && float.IsNaN(decoded[i])), $"element {i}");
        }
    }

    [Fact]
    public void UnsupportedDType_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ElementConversion.ToSingle(KvDType.Unspecified, new byte[4], new float[1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ElementConversion.FromSingle(KvDType.Unspecified, new float[1], new byte[4]));
    }
}

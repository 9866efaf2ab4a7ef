using Google.Protobuf;
using KvDb.Protocol;
using KvDb.Protocol.V1;

namespace KvDb.Protocol.Tests;

public sealed class TensorCodecTests
{
    [Theory]
    [InlineData(DType.F32, 4)]
    [InlineData(DType.F16, 2)]
    [InlineData(DType.Bf16, 2)]
    public void Accepts_a_well_formed_tensor_and_returns_its_leading_dim(DType dtype, int size)
    {
        var t = new Tensor { Dtype = dtype, Data = ByteString.CopyFrom(new byte[3 * 4 * 8 * size]) };
        t.Shape.Add([3, 4, 8]);
        Assert.Equal(3, TensorCodec.CheckShape("keys", t, null, 4, 8));
        Assert.Equal(3, TensorCodec.CheckShape("keys", t, TensorCodec.ToKernel(dtype), 4, 8));
    }

    [Fact]
    public void Rejects_each_kind_of_malformed_tensor_with_a_message_naming_the_field()
    {
        Tensor Make(DType d, long[] shape, int bytes)
        {
            var t = new Tensor { Dtype = d, Data = ByteString.CopyFrom(new byte[bytes]) };
            t.Shape.Add(shape);
            return t;
        }

        (Tensor? T, string Needle)[] cases =
        [
            (null, "missing"),
            (Make(DType.Unspecified, [1, 4, 8], 128), "DTYPE_F32"),
            (Make(DType.F32, [1, 4], 128), "shape"),
            (Make(DType.F32, [1, 4, 9], 144), "shape"),
            (Make(DType.F32, [0, 4, 8], 0), "at least one"),
            (Make(DType.F32, [1, 4, 8], 127), "bytes"),
            (Make(DType.F16, [1, 4, 8], 64), "model stores f32"),
        ];
        foreach ((Tensor? t, string needle) in cases)
        {
            var e = Assert.Throws<TensorFormatException>(() => TensorCodec.CheckShape("values", t, KvDType.F32, 4, 8));
            Assert.Contains("values", e.Message, StringComparison.Ordinal);
            Assert.Contains(needle, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Decodes_all_dtypes_to_the_same_singles_and_rejects_non_finite_values()
    {
        float[] values = [1f, -2.5f, 0.125f, 1024f];
        foreach (KvDType d in new[] { KvDType.F32, KvDType.F16, KvDType.BF16 })
        {
            Tensor t = TensorCodec.FromBytes(d, ElementConversion.FromSingle(d, values), 1, 4);
            Assert.Equal(values, TensorCodec.ToFiniteSingles("queries", t));
        }

        Tensor bad = TensorCodec.FromSingles([1f, float.NaN], 1, 2);
        Assert.Contains("element 1", Assert.Throws<TensorFormatException>(() => TensorCodec.ToFiniteSingles("queries", bad)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dtype_mapping_round_trips()
    {
        foreach (DType d in new[] { DType.F32, DType.F16, DType.Bf16 })
        {
            Assert.Equal(d, TensorCodec.ToWire(TensorCodec.ToKernel(d)));
        }

        Assert.Equal(KvDType.Unspecified, TensorCodec.ToKernel((DType)42));
    }
}

using Google.Protobuf;
using KvDb.Protocol.V1;

namespace KvDb.Protocol;

/// <summary>
/// Checks wire tensors against the shape a call needs and converts them; every failure is a
/// <see cref="TensorFormatException"/> whose message names the field and what to send instead.
/// </summary>
public static class TensorCodec
{
    /// <summary>The kernel dtype of a wire dtype (Unspecified for unknown values).</summary>
    public static KvDType ToKernel(DType dtype) => dtype switch
    {
        DType.F32 => KvDType.F32,
        DType.F16 => KvDType.F16,
        DType.Bf16 => KvDType.BF16,
        _ => KvDType.Unspecified,
    };

    /// <summary>The wire dtype of a kernel dtype.</summary>
    public static DType ToWire(KvDType dtype) => dtype switch
    {
        KvDType.F32 => DType.F32,
        KvDType.F16 => DType.F16,
        KvDType.BF16 => DType.Bf16,
        _ => DType.Unspecified,
    };

    /// <summary>
    /// Checks that <paramref name="tensor"/> has a supported dtype (or exactly <paramref name="requiredDtype"/>
    /// when given), rank and trailing dims as <paramref name="trailingDims"/>, a leading dim ≥ 1 and data
    /// of exactly product(shape) × sizeof(dtype) bytes. Returns the leading dim.
    /// </summary>
    public static int CheckShape(string field, Tensor? tensor, KvDType? requiredDtype, params ReadOnlySpan<long> trailingDims)
    {
        if (tensor is null)
        {
            throw new TensorFormatException($"{field} is missing; send a Tensor of shape [n, {string.Join(", ", trailingDims.ToArray())}]");
        }

        KvDType dtype = ToKernel(tensor.Dtype);
        if (!KvDTypeInfo.IsSupported(dtype))
        {
            throw new TensorFormatException($"{field}.dtype is {tensor.Dtype}; send DTYPE_F32, DTYPE_F16 or DTYPE_BF16");
        }

        if (requiredDtype is { } req && dtype != req)
        {
            throw new TensorFormatException($"{field}.dtype is {KvDTypeInfo.Name(dtype)} but the model stores {KvDTypeInfo.Name(req)}; send {field} as {KvDTypeInfo.Name(req)}");
        }

        string want = $"[n, {string.Join(", ", trailingDims.ToArray())}]";
        if (tensor.Shape.Count != trailingDims.Length + 1)
        {
            throw new TensorFormatException($"{field}.shape is [{string.Join(", ", tensor.Shape)}]; send shape {want}");
        }

        for (int i = 0; i < trailingDims.Length; i++)
        {
            if (tensor.Shape[i + 1] != trailingDims[i])
            {
                throw new TensorFormatException($"{field}.shape is [{string.Join(", ", tensor.Shape)}]; send shape {want} for this model");
            }
        }

        long n = tensor.Shape[0];
        if (n <= 0 || n > int.MaxValue)
        {
            throw new TensorFormatException($"{field}.shape[0] is {n}; send at least one row");
        }

        long elems = n;
        foreach (long dim in trailingDims)
        {
            elems *= dim;
        }

        long bytes = elems * KvDTypeInfo.SizeOf(dtype);
        if (tensor.Data.Length != bytes)
        {
            throw new TensorFormatException($"{field}.data has {tensor.Data.Length} bytes but shape [{string.Join(", ", tensor.Shape)}] of {KvDTypeInfo.Name(dtype)} needs {bytes}");
        }

        return (int)n;
    }

    /// <summary>
    /// Checks a query tensor's wire form — supported dtype, shape [q ≥ 1, heads, head_dim] with plausible dims, data
    /// of exactly that many elements — without knowing the model: whether heads and head_dim are the model's is the
    /// query engine's check (<c>ModelSchema.CheckQueries</c>), made once where the model is at hand.
    /// </summary>
    public static (int Rows, int Heads, int Dim) CheckQueryShape(string field, Tensor? tensor)
    {
        const long MaxDim = 1 << 16;
        if (tensor is { Shape.Count: 3 } t && t.Shape[1] is > 0 and <= MaxDim && t.Shape[2] is > 0 and <= MaxDim)
        {
            int rows = CheckShape(field, tensor, null, t.Shape[1], t.Shape[2]);
            return (rows, (int)t.Shape[1], (int)t.Shape[2]);
        }

        string shape = tensor is null ? "missing" : $"[{string.Join(", ", tensor.Shape)}]";
        throw new TensorFormatException($"{field}.shape is {shape}; send a Tensor of shape [q, num_query_heads, head_dim] (the model's head counts)");
    }

    /// <summary>Decodes a tensor to f32 and rejects NaN and ±Inf (they would poison every score).</summary>
    public static float[] ToFiniteSingles(string field, Tensor tensor)
    {
        KvDType dtype = ToKernel(tensor.Dtype);
        float[] values = ElementConversion.ToSingle(dtype, tensor.Data.Span);
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new TensorFormatException($"{field} holds a non-finite value ({values[i]}) at element {i}; send finite numbers only");
            }
        }

        return values;
    }

    /// <summary>Wraps f32 values as a wire tensor of the given shape.</summary>
    public static Tensor FromSingles(ReadOnlySpan<float> values, params ReadOnlySpan<long> shape)
    {
        var t = new Tensor { Dtype = DType.F32, Data = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values)) };
        foreach (long dim in shape)
        {
            t.Shape.Add(dim);
        }

        return t;
    }

    /// <summary>Wraps raw bytes as a wire tensor.</summary>
    public static Tensor FromBytes(KvDType dtype, ReadOnlySpan<byte> data, params ReadOnlySpan<long> shape)
    {
        var t = new Tensor { Dtype = ToWire(dtype), Data = ByteString.CopyFrom(data) };
        foreach (long dim in shape)
        {
            t.Shape.Add(dim);
        }

        return t;
    }
}

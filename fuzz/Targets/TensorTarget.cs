using Google.Protobuf;
using KvDb.Protocol;
using KvDb.Protocol.V1;

namespace KvDb.Fuzz.Targets;

/// <summary>
/// Wire tensors as the services decode them: the protobuf <see cref="Tensor"/>, then <see cref="TensorCodec"/>'s
/// checks and f32 decoding for queries (Attend), sample queries and keys/values (AppendKv) of a fixed model.
/// Bad input: <see cref="InvalidProtocolBufferException"/>, <see cref="TensorFormatException"/>.
/// </summary>
internal static class TensorTarget
{
    public const string Name = "tensor";

    /// <summary>The model the AppendKv checks use (the seeds are shaped for it).</summary>
    public const int QueryHeads = 4;
    public const int KvHeads = 2;
    public const int HeadDim = 8;

    public static void Run(ReadOnlySpan<byte> data)
    {
        Tensor tensor;
        try
        {
            tensor = Tensor.Parser.ParseFrom(data);
        }
        catch (InvalidProtocolBufferException)
        {
            return;
        }

        Check(() =>
        {
            TensorCodec.CheckQueryShape("queries", tensor);
            TensorCodec.ToFiniteSingles("queries", tensor);
        });
        Check(() =>
        {
            TensorCodec.CheckShape("sample_queries", tensor, null, QueryHeads, HeadDim);
            TensorCodec.ToFiniteSingles("sample_queries", tensor);
        });
        Check(() => TensorCodec.CheckShape("keys", tensor, KvDType.F16, KvHeads, HeadDim));
    }

    private static void Check(Action decode)
    {
        try
        {
            decode();
        }
        catch (TensorFormatException)
        {
            // Refused with a message naming the field: what bad input should get.
        }
    }
}

using System.Collections;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace KvDb.Fuzz.Requests;

/// <summary>
/// Mutates protobuf requests through their descriptors, so every field of every RPC is reached without a mutation
/// per message type: a field is set to an edge value of its type (0, −1, the extremes, 2^40, NaN, a 300-character
/// string, an undefined enum value, …), cleared, or for a message recursed into; a repeated field is cleared,
/// grown or shrunk. Strings come from a pool the caller gives (the ids the request may name) or are odd on purpose.
/// </summary>
internal sealed class MessageMutator(Random random)
{
    private static readonly long[] EdgeLongs = [0, -1, 1, 2, 3, 7, 8, 15, 16, 17, 63, 64, 255, 1024, 4096, 65536, int.MaxValue, int.MinValue, 1L << 31, 1L << 32, 1L << 40, long.MaxValue, long.MinValue];
    private static readonly double[] EdgeDoubles = [0, -0.0, -1, 1e-9, 0.5, 1, 2, 1e30, -1e30, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.Epsilon, float.MaxValue];
    private static readonly string[] OddStrings = ["", " ", "x", new string('a', 300), "ü/é", "../../etc/passwd", "a\0b", "tenant:other", ":", "*", "%s%n"];

    /// <summary>A copy of <paramref name="valid"/> with 1 to 3 mutations; string fields draw from <paramref name="strings"/> half the time.</summary>
    public T Mutate<T>(T valid, IReadOnlyList<string> strings)
        where T : IMessage<T>
    {
        T copy = valid.Clone();
        int n = 1 + random.Next(3);
        for (int i = 0; i < n; i++)
        {
            MutateOne(copy, strings, depth: 0);
        }

        return copy;
    }

    /// <summary>A serialized request with bytes flipped, cut, inserted or repeated (for the raw-bytes calls: the server's protobuf parser).</summary>
    public byte[] Corrupt(byte[] bytes)
    {
        var list = new List<byte>(bytes);
        int n = 1 + random.Next(4);
        for (int i = 0; i < n; i++)
        {
            int at = list.Count == 0 ? 0 : random.Next(list.Count);
            switch (random.Next(4))
            {
                case 0 when list.Count > 0:
                    list[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1 when list.Count > 0:
                    list.RemoveRange(at, list.Count - at);
                    break;
                case 2:
                    list.Insert(at, (byte)random.Next(256));
                    break;
                default:
                    list.InsertRange(at, list.GetRange(at, Math.Min(list.Count - at, 1 + random.Next(8))));
                    break;
            }
        }

        return [.. list];
    }

    private void MutateOne(IMessage message, IReadOnlyList<string> strings, int depth)
    {
        IList<FieldDescriptor> fields = message.Descriptor.Fields.InDeclarationOrder();
        if (fields.Count == 0)
        {
            return;
        }

        FieldDescriptor field = fields[random.Next(fields.Count)];
        IFieldAccessor accessor = field.Accessor;
        if (field.IsMap)
        {
            return;
        }

        if (field.IsRepeated)
        {
            var list = (IList)accessor.GetValue(message);
            switch (random.Next(4))
            {
                case 0:
                    list.Clear();
                    break;
                case 1 when list.Count > 0:
                    list.RemoveAt(random.Next(list.Count));
                    break;
                case 2:
                    int grow = random.Next(2) == 0 ? 1 : random.Next(2000);
                    for (int i = 0; i < grow; i++)
                    {
                        list.Add(Value(field, strings, depth));
                    }

                    break;
                default:
                    if (list.Count > 0)
                    {
                        list[random.Next(list.Count)] = Value(field, strings, depth);
                    }

                    break;
            }

            return;
        }

        if (field.FieldType == FieldType.Message && accessor.GetValue(message) is IMessage sub && random.Next(4) != 0 && depth < 4)
        {
            MutateOne(sub, strings, depth + 1);
            return;
        }

        if (random.Next(6) == 0)
        {
            accessor.Clear(message);
            return;
        }

        accessor.SetValue(message, Value(field, strings, depth));
    }

    private object Value(FieldDescriptor field, IReadOnlyList<string> strings, int depth)
    {
        long l = random.Next(3) == 0 ? random.NextInt64(-100, 100) : EdgeLongs[random.Next(EdgeLongs.Length)];
        double d = EdgeDoubles[random.Next(EdgeDoubles.Length)];
        switch (field.FieldType)
        {
            case FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32:
                return unchecked((int)l);
            case FieldType.UInt32 or FieldType.Fixed32:
                return unchecked((uint)l);
            case FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64:
                return l;
            case FieldType.UInt64 or FieldType.Fixed64:
                return unchecked((ulong)l);
            case FieldType.Double:
                return d;
            case FieldType.Float:
                return (float)d;
            case FieldType.Bool:
                return random.Next(2) == 0;
            case FieldType.String:
                return strings.Count > 0 && random.Next(2) == 0 ? strings[random.Next(strings.Count)] : OddStrings[random.Next(OddStrings.Length)];
            case FieldType.Bytes:
                var bytes = new byte[random.Next(3) == 0 ? random.Next(4096) : random.Next(16)];
                random.NextBytes(bytes);
                return ByteString.CopyFrom(bytes);
            case FieldType.Enum:
                return Enum.ToObject(field.EnumType.ClrType, random.Next(-2, field.EnumType.Values.Count + 2));
            default:
                var message = (IMessage)Activator.CreateInstance(field.MessageType.ClrType)!;
                if (depth < 4)
                {
                    MutateOne(message, strings, depth + 1);
                }

                return message;
        }
    }
}

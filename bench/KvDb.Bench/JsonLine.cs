using System.Buffers;
using System.Text;
using System.Text.Json;

namespace KvDb.Bench;

/// <summary>
/// One flat JSON object written as a single line, the format result collectors append and grep. Numbers go
/// through <see cref="Utf8JsonWriter"/>, so they are culture-invariant whatever the machine's locale.
/// </summary>
internal sealed class JsonLine
{
    private readonly List<Action<Utf8JsonWriter>> _fields = [];

    public JsonLine Add(string name, string value)
    {
        _fields.Add(w => w.WriteString(name, value));
        return this;
    }

    public JsonLine Add(string name, long value)
    {
        _fields.Add(w => w.WriteNumber(name, value));
        return this;
    }

    /// <summary>Adds a number rounded to <paramref name="decimals"/> places; more digits than that are noise in a timing.</summary>
    public JsonLine Add(string name, double value, int decimals)
    {
        // A ratio without its baseline (NaN) or over a zero time is not a number JSON can carry: null says "not measured".
        double rounded = Math.Round(value, decimals);
        _fields.Add(w =>
        {
            if (double.IsFinite(rounded))
            {
                w.WriteNumber(name, rounded);
            }
            else
            {
                w.WriteNull(name);
            }
        });
        return this;
    }

    public void WriteTo(TextWriter output)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (Action<Utf8JsonWriter> field in _fields)
            {
                field(writer);
            }

            writer.WriteEndObject();
        }

        output.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
        output.Flush();
    }
}

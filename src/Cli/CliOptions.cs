using System.Globalization;

namespace KvDb.Cli;

/// <summary>
/// "--name value" pairs after the command, switches that take no value (--insecure, --admin) and, where a command takes
/// them, positional words (<c>kvdb tenant create NAME</c>); anything else is an error.
/// </summary>
internal sealed class CliOptions
{
    /// <summary>Options that are switches: present or not, no value.</summary>
    private static readonly HashSet<string> Switches = new(StringComparer.Ordinal) { "insecure", "admin", "json" };

    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    /// <summary>Words that are not options, in order.</summary>
    public List<string> Positional { get; } = [];

    public static CliOptions Parse(ReadOnlySpan<string> args, bool positional = false)
    {
        var options = new CliOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
            {
                if (positional)
                {
                    options.Positional.Add(a);
                    continue;
                }

                throw new ArgumentException($"unexpected argument \"{a}\"; options look like --port 50051");
            }

            string name = a[2..];
            if (Switches.Contains(name))
            {
                options._values[name] = "true";
                continue;
            }

            string? value = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (i + 1 < args.Length)
            {
                value = args[++i];
            }

            options._values[name] = value ?? throw new ArgumentException($"option --{name} needs a value");
        }

        return options;
    }

    public string Get(string name, string fallback) => _values.TryGetValue(name, out string? v) ? v : fallback;

    public string? GetOrNull(string name) => _values.TryGetValue(name, out string? v) ? v : null;

    public bool Has(string name) => _values.ContainsKey(name);

    public int GetInt(string name, int fallback) => (int)GetLong(name, fallback);

    public double GetDouble(string name, double fallback)
    {
        if (!_values.TryGetValue(name, out string? v))
        {
            return fallback;
        }

        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && x > 0 && double.IsFinite(x)
            ? x
            : throw new ArgumentException($"option --{name} must be a positive number, got \"{v}\"");
    }

    public long GetLong(string name, long fallback)
    {
        if (!_values.TryGetValue(name, out string? v))
        {
            return fallback;
        }

        return long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) && n >= 0
            ? n
            : throw new ArgumentException($"option --{name} must be a non-negative integer, got \"{v}\"");
    }
}

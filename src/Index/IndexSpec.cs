using System.Globalization;

namespace KvDb.Index;

/// <summary>
/// A parsed index spec "family[:opt,opt,…]": each option is KEY=VALUE or a faiss-style token whose
/// letters are the key and trailing digits the value ("L2" = levels 2, "HNSW32" = HNSW with M = 32).
/// </summary>
public sealed class IndexSpec
{
    private readonly Dictionary<string, string> _options;

    private IndexSpec(string text, string family, Dictionary<string, string> options)
    {
        Text = text;
        Family = family;
        _options = options;
    }

    /// <summary>The spec as it was written.</summary>
    public string Text { get; }

    /// <summary>Family name, lower case: block, centroid, lsh, graph, faiss.</summary>
    public string Family { get; }

    /// <summary>Option keys present (original case).</summary>
    public IEnumerable<string> Keys => _options.Keys;

    /// <summary>Parses <paramref name="spec"/>; throws ArgumentException naming the bad part.</summary>
    public static IndexSpec Parse(string spec)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        string family = (colon < 0 ? spec : spec[..colon]).Trim().ToLowerInvariant();
        var options = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (colon >= 0)
        {
            foreach (string raw in spec[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                int eq = raw.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0)
                {
                    options[raw[..eq].Trim()] = raw[(eq + 1)..].Trim();
                    continue;
                }

                int digits = raw.Length;
                while (digits > 0 && char.IsAsciiDigit(raw[digits - 1]))
                {
                    digits--;
                }

                if (digits == 0)
                {
                    throw new ArgumentException($"index option \"{raw}\" in \"{spec}\" needs a name, e.g. K=8 or HNSW32", nameof(spec));
                }

                options[raw[..digits]] = digits < raw.Length ? raw[digits..] : string.Empty;
            }
        }

        return new IndexSpec(spec, family, options);
    }

    /// <summary>True when the option is present (with or without a value).</summary>
    public bool Has(string key) => _options.ContainsKey(key);

    /// <summary>The integer option <paramref name="key"/>, or <paramref name="fallback"/> when absent or empty.</summary>
    public int Int(string key, int fallback)
    {
        if (!_options.TryGetValue(key, out string? text) || text.Length == 0)
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value))
        {
            throw new ArgumentException($"index option {key}={text} of family {Family} must be an integer");
        }

        return value;
    }

    /// <summary>The floating-point option <paramref name="key"/>, or <paramref name="fallback"/>.</summary>
    public double Double(string key, double fallback)
    {
        if (!_options.TryGetValue(key, out string? text) || text.Length == 0)
        {
            return fallback;
        }

        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
        {
            throw new ArgumentException($"index option {key}={text} of family {Family} must be a number");
        }

        return value;
    }

    /// <summary>Throws when an option outside <paramref name="allowed"/> is present, so typos fail loudly.</summary>
    public void AllowOnly(IReadOnlyList<string> allowed)
    {
        foreach (string key in _options.Keys)
        {
            if (!Allowed(allowed, key))
            {
                throw new ArgumentException($"index family {Family} has no option \"{key}\"; known: {string.Join(", ", allowed)}");
            }
        }
    }

    private static bool Allowed(IReadOnlyList<string> allowed, string key)
    {
        foreach (string a in allowed)
        {
            if (string.Equals(a, key, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }
}

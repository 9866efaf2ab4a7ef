using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace KvDb.Cli;

/// <summary>
/// Options that take a number (sizes, ports, counts, rates), parsed with the invariant culture and checked against
/// their range at parse time, so a bad value is a usage error that names the option and the value it got.
/// </summary>
internal static class NumberOptions
{
    /// <summary>A whole number of <typeparamref name="T"/> from <paramref name="min"/> to <paramref name="max"/> (both included).</summary>
    public static Option<T> Integer<T>(string name, string description, T defaultValue, T min, T max, string helpName = "N")
        where T : struct, IBinaryInteger<T>, IMinMaxValue<T> => new(name)
        {
            Description = description,
            HelpName = helpName,
            DefaultValueFactory = _ => defaultValue,
            CustomParser = result =>
            {
                string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
                if (T.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out T value) && value >= min && value <= max)
                {
                    return value;
                }

                result.AddError(min == T.Zero && max == T.MaxValue
                    ? $"{name} must be a non-negative integer, got \"{text}\""
                    : $"{name} must be an integer from {min} to {max}, got \"{text}\"");
                return defaultValue;
            },
        };

    /// <summary>A whole number from 0 up (bytes, counts, sequence numbers).</summary>
    public static Option<T> NonNegative<T>(string name, string description, T defaultValue, string helpName = "N")
        where T : struct, IBinaryInteger<T>, IMinMaxValue<T> => Integer(name, description, defaultValue, T.Zero, T.MaxValue, helpName);

    /// <summary>A TCP port, 0 (a free one) to 65535; <paramref name="min"/> −1 also allows "off".</summary>
    public static Option<int> Port(string name, string description, int defaultValue, int min = 0) =>
        Integer(name, description, defaultValue, min, 65535, "PORT");

    /// <summary>A finite real number above 0, or from 0 up with <paramref name="allowZero"/>.</summary>
    public static Option<double> Real(string name, string description, double defaultValue, bool allowZero, string helpName = "X") => new(name)
    {
        Description = description,
        HelpName = helpName,
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && double.IsFinite(value) && (value > 0 || (allowZero && value == 0)))
            {
                return value;
            }

            result.AddError($"{name} must be a {(allowZero ? "non-negative" : "positive")} number, got \"{text}\"");
            return defaultValue;
        },
    };

    /// <summary>True when <paramref name="option"/> was given on the command line (not just its default).</summary>
    public static bool WasGiven(this ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };
}

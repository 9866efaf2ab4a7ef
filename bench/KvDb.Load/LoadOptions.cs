using System.Globalization;

namespace KvDb.Load;

/// <summary>What a load run does: how many engines, for how long, against which server and model shape.</summary>
public sealed record LoadOptions
{
    /// <summary>Concurrent engines (each one context and its streams at a time).</summary>
    public int Engines { get; init; } = 64;

    /// <summary>Length of the run.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Address of a running server; null starts <c>kvdb serve</c> as a child process.</summary>
    public string? Server { get; init; }

    /// <summary>The child server's <c>--cpu-budget</c>.</summary>
    public long CpuBudgetBytes { get; init; } = 256L << 20;

    /// <summary>The child server's <c>--data</c>; null = a fresh temporary directory, removed afterwards.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Memory beyond the CPU budget that the server may use (runtime, Kestrel buffers, indexes, requests in flight).</summary>
    public long OverheadBytes { get; init; } = 768L << 20;

    /// <summary>Prompt tokens appended, per layer, when an engine starts a context.</summary>
    public int PrefixTokens { get; init; } = 1024;

    /// <summary>Decode steps per context before the engine deletes or keeps it and starts the next.</summary>
    public int DecodeSteps { get; init; } = 64;

    /// <summary>Deadline of every call: a call that exceeds it counts as a stall.</summary>
    public TimeSpan CallDeadline { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A run with no call completing for this long has deadlocked and fails.</summary>
    public TimeSpan StallLimit { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Extra arguments for the child server (e.g. --max-attends 8).</summary>
    public IReadOnlyList<string> ServerArguments { get; init; } = [];

    /// <summary>Parses <c>--engines N --seconds S --server URL --cpu-budget BYTES --data DIR --overhead-mb MB --prefix N --steps N --deadline-seconds S -- SERVER-ARGS…</c>.</summary>
    public static LoadOptions Parse(string[] args)
    {
        var o = new LoadOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (name == "--")
            {
                return o with { ServerArguments = args[(i + 1)..] };
            }

            string value = i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{name} needs a value");
            o = name switch
            {
                "--engines" => o with { Engines = Positive(name, value) },
                "--seconds" => o with { Duration = TimeSpan.FromSeconds(Positive(name, value)) },
                "--server" => o with { Server = value },
                "--cpu-budget" => o with { CpuBudgetBytes = long.Parse(value, CultureInfo.InvariantCulture) },
                "--data" => o with { DataDirectory = value },
                "--overhead-mb" => o with { OverheadBytes = (long)Positive(name, value) << 20 },
                "--prefix" => o with { PrefixTokens = Positive(name, value) },
                "--steps" => o with { DecodeSteps = Positive(name, value) },
                "--deadline-seconds" => o with { CallDeadline = TimeSpan.FromSeconds(Positive(name, value)) },
                "--stall-seconds" => o with { StallLimit = TimeSpan.FromSeconds(Positive(name, value)) },
                _ => throw new ArgumentException($"unknown option {name}; see the README of bench/KvDb.Load"),
            };
        }

        return o;
    }

    private static int Positive(string name, string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n
            : throw new ArgumentException($"{name} must be a positive integer, got \"{value}\"");
}

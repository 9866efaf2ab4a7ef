namespace KvDb.Cli.Tests;

/// <summary>What one run of the kvdb entry point did: its exit code, stdout and stderr.</summary>
public sealed record CliRun(int Code, string Output, string Error)
{
    /// <summary>stdout's non-empty lines, trimmed.</summary>
    public string[] OutputLines => [.. Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    /// <summary>Runs the real kvdb entry point in-process with stdout and stderr captured (tests doing this share the "console" collection).</summary>
    public static async Task<CliRun> RunAsync(params string[] args)
    {
        TextWriter oldOut = Console.Out;
        TextWriter oldErr = Console.Error;
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            int code = await CliApp.RunAsync(args);
            return new CliRun(code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}

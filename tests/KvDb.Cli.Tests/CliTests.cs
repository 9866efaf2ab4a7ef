namespace KvDb.Cli.Tests;

/// <summary>Runs the real kvdb entry point in-process.</summary>
[Collection("console")]
public sealed class CliTests
{
    [Fact]
    public async Task Demo_loads_a_context_answers_queries_and_matches_the_reference()
    {
        (int code, string output) = await Run("demo", "--tokens", "2048", "--layers", "2", "--queries", "2");
        Assert.Equal(0, code);
        Assert.Contains("listening on http://127.0.0.1:", output, StringComparison.Ordinal);
        Assert.Contains("append    2048 tokens × 2 layers", output, StringComparison.Ordinal);
        Assert.Contains("  query 1  EXACT", output, StringComparison.Ordinal);

        // 2048 tokens are too few for sampling to pay: AUTO answers exactly, and says so.
        Assert.Contains("AUTO chose exact", output, StringComparison.Ordinal);
        Assert.DoesNotContain("FAILED", output, StringComparison.Ordinal);
        Assert.Contains("result    OK", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unknown_commands_and_bad_options_exit_non_zero_with_a_message()
    {
        (int code, string output) = await Run("frobnicate");
        Assert.Equal(2, code);
        Assert.Contains("unknown command", output, StringComparison.Ordinal);

        (code, output) = await Run("demo", "--tokens", "many");
        Assert.Equal(2, code);
        Assert.Contains("--tokens must be a non-negative integer", output, StringComparison.Ordinal);

        (code, output) = await Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("kvdb serve", output, StringComparison.Ordinal);
    }

    private static async Task<(int Code, string Output)> Run(params string[] args)
    {
        TextWriter oldOut = Console.Out;
        TextWriter oldErr = Console.Error;
        using var writer = new StringWriter();
        Console.SetOut(writer);
        Console.SetError(writer);
        try
        {
            int code = await CliApp.RunAsync(args);
            return (code, writer.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }
}

using System.CommandLine;

namespace KvDb.Cli.Tests;

/// <summary>Generated help and the exit codes of command lines that cannot run.</summary>
[Collection("console")]
public sealed class UsageTests
{
    [Theory]
    [InlineData("frobnicate")]
    [InlineData("serve", "--bogus")]
    [InlineData("serve", "--port", "70000")]
    [InlineData("serve", "--eviction-policy", "fifo")]
    [InlineData("serve", "--pin-quota", "1.5")]
    [InlineData("context", "pin", "ctx", "--tier", "tape")]
    [InlineData("serve", "--port", "fifty")]
    [InlineData("serve", "--http-port", "-2")]
    [InlineData("serve", "--cpu-budget", "-1")]
    [InlineData("serve", "--max-attends", "-1")]
    [InlineData("serve", "--log-level", "loud")]
    [InlineData("serve", "--log-format", "xml")]
    [InlineData("serve", "--server", "http://127.0.0.1:1")]
    [InlineData("demo", "--tokens", "many")]
    [InlineData("demo", "--tokens", "256")]
    [InlineData("demo", "--layers", "0")]
    [InlineData("demo", "--epsilon", "0")]
    [InlineData("tenant")]
    [InlineData("tenant", "create")]
    [InlineData("tenant", "create", "acme", "extra")]
    [InlineData("tenant", "grant", "acme")]
    [InlineData("tenant", "set-quota", "acme", "--rps", "-1")]
    [InlineData("tenant", "list", "--json")]
    [InlineData("context")]
    [InlineData("context", "ttl", "ctx-1")]
    [InlineData("context", "ttl", "ctx-1", "soon")]
    [InlineData("stats", "--limit", "5")]
    [InlineData("events", "--count", "-3")]
    [InlineData("completion", "fish")]
    public async Task A_command_line_that_cannot_run_exits_2_with_a_message_on_stderr(params string[] args)
    {
        CliRun run = await CliRun.RunAsync(args);
        Assert.Equal(CliApp.UsageError, run.Code);
        Assert.NotEmpty(run.Error.Trim());
        Assert.Empty(run.Output);
    }

    [Fact]
    public async Task Kvdb_alone_prints_the_help_and_exits_2()
    {
        CliRun alone = await CliRun.RunAsync();
        CliRun help = await CliRun.RunAsync("--help");
        Assert.Equal((CliApp.UsageError, 0), (alone.Code, help.Code));
        Assert.Equal(help.Output, alone.Output);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("help")]
    public async Task Help_lists_every_command(string flag)
    {
        CliRun run = await CliRun.RunAsync(flag);
        Assert.Equal(0, run.Code);
        HashSet<string> words = Words(run.Output);
        foreach (Command command in CliApp.CreateRootCommand().Subcommands.Where(c => !c.Hidden))
        {
            Assert.Contains(command.Name, words);
        }
    }

    /// <summary>Every command's help, reached as <c>kvdb PATH --help</c> and as <c>kvdb help PATH</c>, names its subcommands, options and arguments.</summary>
    [Fact]
    public async Task Each_command_has_help_that_lists_its_subcommands_options_and_arguments()
    {
        foreach ((string[] path, Command command) in Commands(CliApp.CreateRootCommand(), []))
        {
            CliRun run = await CliRun.RunAsync([.. path, "--help"]);
            Assert.Equal(0, run.Code);
            CliRun viaHelp = await CliRun.RunAsync(["help", .. path]);
            Assert.Equal((0, run.Output), (viaHelp.Code, viaHelp.Output));
            HashSet<string> words = Words(run.Output);
            foreach (Command sub in command.Subcommands.Where(c => !c.Hidden))
            {
                Assert.Contains(sub.Name, words);
            }

            foreach (Option option in command.Options.Where(o => !o.Hidden))
            {
                Assert.Contains(option.Name, words);
            }

            foreach (Argument argument in command.Arguments.Where(a => !a.Hidden))
            {
                Assert.Contains($"<{argument.HelpName ?? argument.Name}>", words);
            }
        }
    }

    private static IEnumerable<(string[] Path, Command Command)> Commands(Command command, string[] path)
    {
        foreach (Command sub in command.Subcommands.Where(c => !c.Hidden))
        {
            string[] subPath = [.. path, sub.Name];
            yield return (subPath, sub);
            foreach ((string[] p, Command c) in Commands(sub, subPath))
            {
                yield return (p, c);
            }
        }
    }

    /// <summary>The help's words (split on white space and commas).</summary>
    private static HashSet<string> Words(string text) =>
        [.. text.Split([' ', '\n', '\r', '\t', ','], StringSplitOptions.RemoveEmptyEntries)];
}

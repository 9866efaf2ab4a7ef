using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace KvDb.Cli;

/// <summary>
/// The kvdb command line: a System.CommandLine tree (one command per verb, generated help, the <c>[suggest]</c>
/// directive for shell completion) over the server and client libraries. Exit codes: 0 done; 1 the server refused a
/// call, or the demo's check failed; 2 a usage error (also <c>kvdb</c> alone, after printing the help).
/// </summary>
internal static class CliApp
{
    /// <summary>The exit code of a command line that cannot run: an unknown command or option, a bad or missing value.</summary>
    public const int UsageError = 2;

    /// <summary>
    /// How arguments are read: no response files, so <c>kvdb tenant grant acme @docs</c> passes "@docs" as the
    /// shared namespace instead of reading a file named docs.
    /// </summary>
    public static ParserConfiguration ParserConfiguration { get; } = new() { ResponseFileTokenReplacer = null };

    /// <summary>Every kvdb command, with --help on each and the [suggest] directive on the root.</summary>
    public static RootCommand CreateRootCommand()
    {
        var root = new RootCommand("kvdb — a database for LLM attention KV caches") { HelpName = "kvdb" };
        root.Subcommands.Add(new ServeCommand());
        root.Subcommands.Add(new TenantCommand());
        root.Subcommands.Add(new ContextCommand());
        foreach (Command command in AdminCommands.Create())
        {
            root.Subcommands.Add(command);
        }

        root.Subcommands.Add(new DemoCommand());
        root.Subcommands.Add(new CompletionCommand());
        root.Subcommands.Add(new HelpCommand());

        // No command: the help, with the usage-error exit code.
        root.SetAction(parse =>
        {
            new HelpAction().Invoke(parse);
            return UsageError;
        });
        return root;
    }

    /// <summary>Parses <paramref name="args"/> against a fresh <see cref="CreateRootCommand"/>.</summary>
    public static ParseResult Parse(IReadOnlyList<string> args) => CreateRootCommand().Parse(args, ParserConfiguration);

    public static Task<int> RunAsync(string[] args) => RunAsync(Parse(args));

    /// <summary>Runs a parsed command line: parse errors print "kvdb: …" and exit 2, like an <see cref="ArgumentException"/> from a command.</summary>
    public static async Task<int> RunAsync(ParseResult parse)
    {
        if (parse.Action is ParseErrorAction)
        {
            foreach (System.CommandLine.Parsing.ParseError error in parse.Errors)
            {
                Console.Error.WriteLine("kvdb: " + error.Message);
            }

            Console.Error.WriteLine($"kvdb: see `{CommandPath(parse.CommandResult)} --help`");
            return UsageError;
        }

        var invocation = new InvocationConfiguration
        {
            Output = Console.Out,
            Error = Console.Error,
            // Exceptions reach the catch below (usage errors) or the runtime (bugs), as before.
            EnableDefaultExceptionHandler = false,
            // serve stops gracefully on SIGINT/SIGTERM through the host's lifetime, and events on Ctrl-C by itself.
            ProcessTerminationTimeout = null,
        };
        try
        {
            return await parse.InvokeAsync(invocation).ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            return Fail(e.Message);
        }
    }

    /// <summary>Prints "kvdb: <paramref name="message"/>" on stderr; returns <see cref="UsageError"/>.</summary>
    public static int Fail(string message)
    {
        Console.Error.WriteLine("kvdb: " + message);
        return UsageError;
    }

    /// <summary>"kvdb tenant create" for the command a parse ended in.</summary>
    private static string CommandPath(System.CommandLine.Parsing.CommandResult result)
    {
        var names = new List<string>();
        for (System.CommandLine.Parsing.SymbolResult? r = result; r is not null; r = r.Parent)
        {
            if (r is System.CommandLine.Parsing.CommandResult c)
            {
                names.Add(c.Command is RootCommand ? "kvdb" : c.Command.Name);
            }
        }

        names.Reverse();
        return string.Join(' ', names);
    }
}

using System.CommandLine;

namespace KvDb.Cli;

/// <summary><c>kvdb help [COMMAND…]</c> (hidden): the same as <c>kvdb [COMMAND…] --help</c>.</summary>
internal sealed class HelpCommand : Command
{
    public HelpCommand()
        : base("help", "Show the help of kvdb or of a command.")
    {
        Hidden = true;
        var words = new Argument<string[]>("COMMAND") { Arity = ArgumentArity.ZeroOrMore, Description = "the command, e.g. tenant create" };
        Arguments.Add(words);
        SetAction(parse =>
        {
            var root = (RootCommand)parse.RootCommandResult.Command;
            return CliApp.RunAsync(root.Parse([.. parse.GetValue(words) ?? [], "--help"], CliApp.ParserConfiguration));
        });
    }
}

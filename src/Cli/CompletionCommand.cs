using System.CommandLine;

namespace KvDb.Cli;

/// <summary>
/// <c>kvdb completion bash|zsh</c>: prints a shell completion script. The script asks kvdb itself for suggestions
/// through System.CommandLine's <c>[suggest:POSITION] "COMMAND LINE"</c> directive (the protocol dotnet-suggest uses
/// too), so completions always match the commands and options of the kvdb that answers.
/// </summary>
internal sealed class CompletionCommand : Command
{
    /// <summary>bash: <c>source &lt;(kvdb completion bash)</c>, e.g. from ~/.bashrc.</summary>
    public const string Bash = """
        # kvdb completion for bash: source <(kvdb completion bash)
        _kvdb_complete() {
          local IFS=$'\n'
          local suggestions
          suggestions=$("${COMP_WORDS[0]}" "[suggest:${COMP_POINT}]" "${COMP_LINE}" 2>/dev/null) || return
          COMPREPLY=($(compgen -W "${suggestions}" -- "${COMP_WORDS[COMP_CWORD]}"))
        }
        complete -o default -F _kvdb_complete kvdb
        """;

    /// <summary>zsh: <c>source &lt;(kvdb completion zsh)</c> after compinit, e.g. from ~/.zshrc.</summary>
    public const string Zsh = """
        # kvdb completion for zsh: source <(kvdb completion zsh)   (after compinit)
        _kvdb() {
          local line="${words[1,CURRENT]}"
          local -a suggestions
          suggestions=(${(f)"$("${words[1]}" "[suggest:${#line}]" "${line}" 2>/dev/null)"})
          compadd -a suggestions
        }
        compdef _kvdb kvdb
        """;

    public CompletionCommand()
        : base("completion", "Print a shell completion script: source <(kvdb completion bash), or zsh.")
    {
        var shell = new Argument<string>("SHELL") { Description = "the shell to complete in", HelpName = "bash|zsh" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        Arguments.Add(shell);
        SetAction(parse =>
        {
            parse.InvocationConfiguration.Output.WriteLine(parse.GetValue(shell) == "zsh" ? Zsh : Bash);
            return 0;
        });
    }
}

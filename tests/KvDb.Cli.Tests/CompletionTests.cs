using System.Diagnostics;

namespace KvDb.Cli.Tests;

/// <summary>Shell completion: the [suggest:POSITION] directive answers with the commands, options and values that fit, and the bash script uses it.</summary>
[Collection("console")]
public sealed class CompletionTests
{
    [Fact]
    public async Task Suggest_after_kvdb_lists_every_command()
    {
        string[] suggestions = await SuggestAsync("kvdb ");
        Assert.Superset(new HashSet<string>(["serve", "tenant", "context", "stats", "contexts", "evict", "checkpoint", "events", "demo", "completion", "--help", "--version"]), new HashSet<string>(suggestions));
    }

    [Fact]
    public async Task Suggest_after_tenant_lists_its_subcommands_and_connection_options()
    {
        string[] suggestions = await SuggestAsync("kvdb tenant ");
        Assert.Superset(new HashSet<string>(["create", "list", "rotate-key", "revoke-key", "set-quota", "grant", "revoke-grant", "delete", "--server", "--ca-file"]), new HashSet<string>(suggestions));
    }

    [Fact]
    public async Task Suggest_completes_a_partial_word()
    {
        Assert.Equal(["--log-format", "--log-level"], await SuggestAsync("kvdb serve --log-"));
        Assert.Equal(["events", "evict"], await SuggestAsync("kvdb ev"));
        Assert.Equal(["bash", "zsh"], (await SuggestAsync("kvdb completion ")).Where(s => !s.StartsWith('-') && !s.StartsWith('/')));
    }

    [Fact]
    public async Task Suggest_offers_an_options_values()
    {
        Assert.Equal(["critical", "debug", "error", "information", "none", "trace", "warning"], await SuggestAsync("kvdb serve --log-level "));
        Assert.Equal(["json", "text"], await SuggestAsync("kvdb serve --log-format "));
    }

    [Fact]
    public async Task Suggest_at_a_position_inside_the_line_completes_the_word_there()
    {
        string[] suggestions = await SuggestAsync("kvdb ten --server http://h:1", position: "kvdb ten".Length);
        Assert.Equal(["tenant"], suggestions);
    }

    [Theory]
    [InlineData("bash", "complete -o default -F _kvdb_complete kvdb")]
    [InlineData("zsh", "compdef _kvdb kvdb")]
    public async Task Completion_prints_a_script_that_asks_the_suggest_directive(string shell, string registration)
    {
        CliRun run = await CliRun.RunAsync("completion", shell);
        Assert.Equal(0, run.Code);
        Assert.Contains("[suggest:", run.Output, StringComparison.Ordinal);
        Assert.Contains(registration, run.OutputLines);
    }

    /// <summary>The bash script, sourced into a real bash, fills COMPREPLY from the built kvdb executable.</summary>
    [SkippableFact]
    public async Task Bash_completion_completes_subcommands_and_option_values_through_the_built_kvdb()
    {
        string kvdb = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "kvdb.exe" : "kvdb");
        Skip.IfNot(File.Exists("/bin/bash") && File.Exists(kvdb), "needs bash and the kvdb app host");
        Assert.Equal(["create"], await BashCompleteAsync(kvdb, "tenant", "cr"));
        Assert.Equal(["debug"], await BashCompleteAsync(kvdb, "serve", "--log-level", "d"));
        Assert.Equal(["--json"], await BashCompleteAsync(kvdb, "stats", "--j"));
    }

    private static async Task<string[]> SuggestAsync(string line, int? position = null)
    {
        CliRun run = await CliRun.RunAsync($"[suggest:{position ?? line.Length}]", line);
        Assert.Equal(0, run.Code);
        return run.OutputLines;
    }

    /// <summary>COMPREPLY of the bash script for "kvdb WORDS…", the cursor at the end of the last word.</summary>
    private static async Task<string[]> BashCompleteAsync(string kvdb, params string[] words)
    {
        const string script = """
            source <("$KVDB" completion bash)
            read -r -a rest <<< "$WORDS"
            COMP_WORDS=("$KVDB" "${rest[@]}")
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            COMP_LINE="${COMP_WORDS[*]}"
            COMP_POINT=${#COMP_LINE}
            _kvdb_complete
            printf '%s\n' "${COMPREPLY[@]}"
            """;
        var info = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        info.Environment["KVDB"] = kvdb;
        info.Environment["WORDS"] = string.Join(' ', words);
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_ROOT")))
        {
            // The app host finds the runtime this test runs on.
            info.Environment["DOTNET_ROOT"] = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "..", "..", ".."));
        }

        using Process bash = Process.Start(info)!;
        Task<string> stdout = bash.StandardOutput.ReadToEndAsync();
        Task<string> stderr = bash.StandardError.ReadToEndAsync();
        await bash.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(bash.ExitCode == 0, await stderr);
        return (await stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}

using System.CommandLine;
using Grpc.Core;
using KvDb.Client;

namespace KvDb.Cli;

/// <summary>
/// What every command against a running server shares: the connection options (<c>--server</c>, <c>--ca-file</c>),
/// the key from the environment, and how a refused call ends (the server's status on stderr, exit code 1).
/// </summary>
internal sealed class ServerConnection
{
    /// <summary>The server a command talks to when <c>--server</c> is not given.</summary>
    public const string DefaultServer = "http://127.0.0.1:50051";

    private readonly string[] _keyVariables;

    /// <param name="keyVariables">Environment variables to take the key from, the first one set wins; none set: no key.</param>
    public ServerConnection(params string[] keyVariables) => _keyVariables = keyVariables;

    /// <summary>The server's address (https:// for TLS).</summary>
    public Option<string> Server { get; } = new("--server")
    {
        Description = "address of the running server (https://… when it serves TLS)",
        HelpName = "URL",
        DefaultValueFactory = _ => DefaultServer,
        Recursive = true,
    };

    /// <summary>PEM CA certificate to trust for the server's TLS certificate.</summary>
    public Option<string?> CaFile { get; } = new("--ca-file")
    {
        Description = "PEM CA certificate that issued the server's TLS certificate (default: the system's trust store)",
        HelpName = "PEM",
        Recursive = true,
    };

    /// <summary>The key sent with every call: the first of the environment variables that is set.</summary>
    public string? Key => _keyVariables.Select(Environment.GetEnvironmentVariable).FirstOrDefault(k => k is not null);

    /// <summary>Adds <c>--server</c> and <c>--ca-file</c> to <paramref name="command"/> and (they are recursive) its subcommands.</summary>
    public void AddTo(Command command)
    {
        command.Options.Add(Server);
        command.Options.Add(CaFile);
    }

    /// <summary>
    /// Makes <paramref name="body"/>, run with a client of <c>--server</c>, the action of <paramref name="command"/>;
    /// a call the server refuses prints "kvdb: STATUS: message" and exits 1.
    /// </summary>
    public void SetAction(Command command, Func<ParseResult, KvDbClient, Task<int>> body) =>
        command.SetAction(async parse =>
        {
            using var client = new KvDbClient(parse.GetValue(Server)!, Key, parse.GetValue(CaFile));
            try
            {
                return await body(parse, client).ConfigureAwait(false);
            }
            catch (RpcException e)
            {
                Console.Error.WriteLine($"kvdb: {e.StatusCode}: {e.Status.Detail}");
                return 1;
            }
        });
}

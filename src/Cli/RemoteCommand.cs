using Grpc.Core;
using KvDb.Client;

namespace KvDb.Cli;

/// <summary>What every command against a running server shares: the connection (--server, --ca-file, a key) and how a refused call ends it.</summary>
internal static class RemoteCommand
{
    /// <summary>Runs <paramref name="body"/> with a client of --server; a call the server refuses prints "kvdb: STATUS: message" and exits 1.</summary>
    public static async Task<int> RunAsync(CliOptions options, string? key, Func<KvDbClient, Task<int>> body)
    {
        using var client = new KvDbClient(options.Get("server", "http://127.0.0.1:50051"), key, options.GetOrNull("ca-file"));
        try
        {
            return await body(client).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            Console.Error.WriteLine($"kvdb: {e.StatusCode}: {e.Status.Detail}");
            return 1;
        }
    }
}

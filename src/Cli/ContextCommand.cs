using KvDb.Protocol.V1;

namespace KvDb.Cli;

/// <summary><c>kvdb context pin|unpin|ttl …</c>: a context's settings on a running server (key from KVDB_API_KEY or KVDB_ADMIN_KEY).</summary>
internal static class ContextCommand
{
    public static async Task<int> RunAsync(CliOptions options)
    {
        List<string> words = options.Positional;
        if (words.Count < 2 || (words[0] == "ttl" && words.Count < 3))
        {
            throw new ArgumentException("kvdb context needs a subcommand and a context id: pin ID, unpin ID, ttl ID SECONDS (0 = never expires)");
        }

        return await RemoteCommand.RunAsync(options, Environment.GetEnvironmentVariable("KVDB_API_KEY") ?? Environment.GetEnvironmentVariable("KVDB_ADMIN_KEY"), async client =>
        {
            Context c = words[0] switch
            {
                "pin" => await client.UpdateContextAsync(words[1], pinned: true),
                "unpin" => await client.UpdateContextAsync(words[1], pinned: false),
                "ttl" => await client.UpdateContextAsync(words[1], ttlSeconds: long.TryParse(words[2], out long s) ? s : throw new ArgumentException($"ttl needs a whole number of seconds, got \"{words[2]}\"")),
                _ => throw new ArgumentException($"unknown context subcommand \"{words[0]}\"; use pin, unpin or ttl"),
            };
            string expires = c.ExpiresAtUnixMs == 0 ? "never expires" : "expires " + DateTimeOffset.FromUnixTimeMilliseconds(c.ExpiresAtUnixMs).ToString("u");
            Console.WriteLine($"context {c.Id}: {(c.Pinned ? "pinned in the CPU tier" : "not pinned")}, {expires}, {c.NumTokens} tokens, {c.Bytes} bytes");
            return 0;
        }).ConfigureAwait(false);
    }
}

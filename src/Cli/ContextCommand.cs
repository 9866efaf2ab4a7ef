using System.CommandLine;
using KvDb.Client;
using KvDb.Protocol.V1;

namespace KvDb.Cli;

/// <summary><c>kvdb context pin|unpin|ttl …</c>: a context's settings on a running server (key from KVDB_API_KEY or KVDB_ADMIN_KEY).</summary>
internal sealed class ContextCommand : Command
{
    private readonly ServerConnection _connection = new("KVDB_API_KEY", "KVDB_ADMIN_KEY");

    public ContextCommand()
        : base("context", "Pin a context's blocks in a tier, unpin them, or set its TTL, with the key from KVDB_API_KEY (or KVDB_ADMIN_KEY).")
    {
        _connection.AddTo(this);
        var tier = new Option<string>("--tier")
        {
            Description = "cpu (never demoted to disk), gpu (also kept mirrored in the GPU tier) or disk (recorded, holds nothing)",
            DefaultValueFactory = _ => "cpu",
        };
        tier.AcceptOnlyFromAmong("cpu", "gpu", "disk");
        Command pin = UpdateCommand("pin", "Keep the context's blocks in a tier (admin key).", (client, id, parse) => client.PinContextAsync(id, PinTierOf(parse.GetValue(tier))));
        pin.Options.Add(tier);
        Subcommands.Add(pin);
        Subcommands.Add(UpdateCommand("unpin", "Let the context's blocks be demoted again (admin key).", (client, id, _) => client.UpdateContextAsync(id, pinned: false)));
        var seconds = new Argument<long>("SECONDS") { Description = "lifetime from now in seconds; 0 = never expires" };
        Subcommands.Add(UpdateCommand("ttl", "Set the context's time to live from now.", (client, id, parse) => client.UpdateContextAsync(id, ttlSeconds: parse.GetValue(seconds)), seconds));
    }

    private static PinTier PinTierOf(string? name) => name switch
    {
        "gpu" => PinTier.Gpu,
        "disk" => PinTier.Disk,
        _ => PinTier.Cpu,
    };

    private static string TierName(PinTier tier) => tier switch
    {
        PinTier.Gpu => "GPU",
        PinTier.Disk => "disk",
        _ => "CPU",
    };

    private Command UpdateCommand(string verb, string description, Func<KvDbClient, string, ParseResult, Task<Context>> update, params Argument[] more)
    {
        var id = new Argument<string>("ID") { Description = "the context's id" };
        var command = new Command(verb, description) { id };
        foreach (Argument argument in more)
        {
            command.Arguments.Add(argument);
        }

        _connection.SetAction(command, async (parse, client) =>
        {
            Context c = await update(client, parse.GetValue(id)!, parse);
            string expires = c.ExpiresAtUnixMs == 0 ? "never expires" : "expires " + DateTimeOffset.FromUnixTimeMilliseconds(c.ExpiresAtUnixMs).ToString("u");
            Console.WriteLine($"context {c.Id}: {(c.Pinned ? $"pinned in the {TierName(c.PinTier)} tier" : "not pinned")}, {expires}, {c.NumTokens} tokens, {c.Bytes} bytes");
            return 0;
        });
        return command;
    }
}

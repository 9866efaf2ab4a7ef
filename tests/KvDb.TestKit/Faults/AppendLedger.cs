using System.Runtime.InteropServices;
using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.TestKit.Faults;

/// <summary>
/// Per context: the tokens acknowledged (promised to survive) and the most ever sent (the most that may come back).
/// <see cref="VerifyAsync"/> checks a restarted server against it: nothing acknowledged lost, every layer the same
/// length, every byte served equal to what was sent, and an EXACT Attend equal to an f64 reference.
/// </summary>
public sealed class AppendLedger
{
    private const double AttendTolerance = 1e-4;
    private readonly Dictionary<string, long> _acked = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _sent = new(StringComparer.Ordinal);
    private readonly long _maxContextTokens;
    private int _next;

    /// <summary>Contexts grow to about <paramref name="maxContextTokens"/>, then appends go to a new one.</summary>
    public AppendLedger(long maxContextTokens = 2048)
    {
        _maxContextTokens = maxContextTokens;
    }

    public long AckedTokens
    {
        get
        {
            lock (_acked)
            {
                return _acked.Values.Sum();
            }
        }
    }

    public int Contexts
    {
        get
        {
            lock (_acked)
            {
                return _acked.Count;
            }
        }
    }

    /// <summary>An existing context with room to grow, or a new id (then <paramref name="isNew"/>).</summary>
    public string Pick(Random rng, out bool isNew)
    {
        ArgumentNullException.ThrowIfNull(rng);
        lock (_acked)
        {
            var open = _acked.Where(p => p.Value < _maxContextTokens).Select(p => p.Key).ToList();
            isNew = open.Count == 0 || rng.Next(6) == 0;
            return isNew ? "c" + _next++ : open[rng.Next(open.Count)];
        }
    }

    /// <summary>Contexts with at least <paramref name="minTokens"/> acknowledged tokens.</summary>
    public IReadOnlyList<(string Id, long Tokens)> Snapshot(long minTokens = 0)
    {
        lock (_acked)
        {
            return [.. _acked.Where(p => p.Value >= minTokens).Select(p => (p.Key, p.Value))];
        }
    }

    public long Acked(string id)
    {
        lock (_acked)
        {
            return _acked.GetValueOrDefault(id);
        }
    }

    public void Created(string id)
    {
        lock (_acked)
        {
            _acked[id] = 0;
            _sent[id] = 0;
        }
    }

    public void Sending(string id, long end)
    {
        lock (_acked)
        {
            _sent[id] = Math.Max(_sent[id], end);
        }
    }

    public void Acknowledged(string id, long end)
    {
        lock (_acked)
        {
            _acked[id] = Math.Max(_acked[id], end);
        }
    }

    /// <summary>A context the workload deleted (its delete was acknowledged): it must stay gone.</summary>
    public void Deleted(string id)
    {
        lock (_acked)
        {
            _acked.Remove(id);
            _sent.Remove(id);
        }
    }

    /// <summary>
    /// Checks every context against what was acknowledged and sent. A context that recovered more than was
    /// acknowledged (a commit whose acknowledgement the kill cut off) is adopted at its recovered length.
    /// </summary>
    public async Task<LedgerCheck> VerifyAsync(KvDbClient client, Random rng, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(rng);
        var check = new LedgerCheck();
        foreach ((string id, long acked) in Snapshot())
        {
            Context c;
            try
            {
                c = await client.GetContextAsync(id, cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
                check.Lost(acked, $"context {id} ({acked} acknowledged tokens) is gone");
                continue;
            }

            long sent;
            lock (_acked)
            {
                sent = _sent[id];
            }

            if (c.LayerTokens.Any(t => t != c.NumTokens))
            {
                check.Torn($"context {id} has layers of different lengths ({string.Join(",", c.LayerTokens)}): a half-applied stream");
            }

            if (c.NumTokens < acked)
            {
                check.Lost(acked - c.NumTokens, $"context {id} has {c.NumTokens} tokens but {acked} were acknowledged");
            }

            if (c.NumTokens > sent)
            {
                check.Torn($"context {id} has {c.NumTokens} tokens but only {sent} were ever sent");
                continue;
            }

            Acknowledged(id, c.NumTokens);
            for (int layer = 0; layer < DeterministicKv.Layers; layer++)
            {
                await CheckLayerAsync(client, id, layer, check, cancellationToken).ConfigureAwait(false);
            }
        }

        var attendable = Snapshot(DeterministicKv.BlockSize);
        if (attendable.Count > 0)
        {
            (string id, long tokens) = attendable[rng.Next(attendable.Count)];
            await CheckExactAttendAsync(client, id, rng.Next(DeterministicKv.Layers), tokens, rng, check, cancellationToken).ConfigureAwait(false);
        }

        return check;
    }

    /// <summary>Reads a layer and compares every token id and byte with what was sent for those positions.</summary>
    public static async Task CheckLayerAsync(KvDbClient client, string id, int layer, LedgerCheck check, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(check);
        (int[] ids, byte[] keys, byte[] values) = await client.ReadLayerAsync(id, layer, cancellationToken).ConfigureAwait(false);
        (byte[] k, byte[] v) = DeterministicKv.Kv(id, layer, 0, ids.Length);
        if (!ids.AsSpan().SequenceEqual(DeterministicKv.TokenIds(id, 0, ids.Length)) || !k.AsSpan().SequenceEqual(keys) || !v.AsSpan().SequenceEqual(values))
        {
            check.Torn($"context {id} layer {layer}: ReadKv served {ids.Length} tokens that differ from what was sent");
        }
    }

    /// <summary>EXACT Attend over the first <paramref name="tokens"/> tokens vs the f64 reference over the same K/V.</summary>
    private static async Task CheckExactAttendAsync(KvDbClient client, string id, int layer, long tokens, Random rng, LedgerCheck check, CancellationToken cancellationToken)
    {
        const int queries = 2;
        var q = new float[queries * DeterministicKv.QueryHeads * DeterministicKv.HeadDim];
        for (int i = 0; i < q.Length; i++)
        {
            q[i] = (float)(rng.NextDouble() * 4 - 2);
        }

        // Only the acknowledged prefix is known to be there; anything recovered past it is excluded.
        Context c = await client.GetContextAsync(id, cancellationToken).ConfigureAwait(false);
        AttentionPartial answer = await client.AttendAsync(
            id, layer, q, queries, DeterministicKv.QueryHeads, DeterministicKv.HeadDim,
            excludeStart: tokens, excludeEnd: c.NumTokens > tokens ? c.NumTokens : 0,
            plan: new Plan { Kind = PlanKind.Exact }, cancellationToken: cancellationToken).ConfigureAwait(false);
        (byte[] k, byte[] v) = DeterministicKv.Kv(id, layer, 0, (int)tokens);
        (double[] output, double[] lse) = ReferenceAttention.Compute(
            MemoryMarshal.Cast<byte, float>(k), MemoryMarshal.Cast<byte, float>(v), q, queries,
            DeterministicKv.QueryHeads, DeterministicKv.KvHeads, DeterministicKv.HeadDim, 1.0 / Math.Sqrt(DeterministicKv.HeadDim));
        double outputError = ReferenceAttention.MaxAbsError(answer.Output, output);
        double lseError = ReferenceAttention.MaxAbsError(answer.Lse, lse);
        check.AttendChecks++;
        if (!(outputError <= AttendTolerance && lseError <= AttendTolerance))
        {
            check.Torn($"context {id} layer {layer}: EXACT Attend over {tokens} tokens differs from the f64 reference (output {outputError:E2}, lse {lseError:E2})");
        }
    }
}

using System.Runtime.InteropServices;

namespace KvDb.Store;

// Prefix matching and sharing: LookupPrefix, and filling new contexts and forks from committed blocks by reference.
public partial class KvStore
{
    /// <inheritdoc />
    public long LookupPrefix(string model, string ns, ReadOnlySpan<int> tokenIds)
    {
        ModelSchema schema = GetModel(model);
        UInt128 root = BlockHashing.Root(schema.Name, ns ?? string.Empty);
        lock (_opLock)
        {
            long fast = FastPrefixLength(schema, root, tokenIds);
            if (fast >= 0)
            {
                return fast;
            }

            PrefixMatch match = Match(schema, root, tokenIds);
            return ((long)match.Chain.Count * schema.BlockSize) + match.Extra;
        }
    }

    /// <summary>
    /// LookupPrefix without walking the whole chain: one hash finds the contexts whose committed tokens start
    /// with the same first block, and a vectorized common-prefix scan of their token ids gives the answer.
    /// This equals the chain walk because every published block chain is held by some context that
    /// committed those tokens in every layer. Returns −1 (walk the chain instead) for prompts shorter than a
    /// block, when no context holds the first block, or when too many do to compare them all.
    /// </summary>
    private long FastPrefixLength(ModelSchema m, UInt128 root, ReadOnlySpan<int> tokens)
    {
        const int MaxCandidates = 64;
        if (tokens.Length < m.BlockSize)
        {
            return -1;
        }

        List<KvContext>? owners = _directory.ContextsAt(BlockHashing.Next(root, tokens[..m.BlockSize]));
        if (owners is null || owners.Count > MaxCandidates)
        {
            return -1;
        }

        long best = -1;
        foreach (KvContext c in owners)
        {
            lock (c.Gate)
            {
                if (c.Deleted || c.Model != m)
                {
                    continue;
                }

                int limit = (int)Math.Min(Math.Min(c.CommittedTokens, c.TokenIds.Count), tokens.Length);
                best = Math.Max(best, tokens[..limit].CommonPrefixLength(CollectionsMarshal.AsSpan(c.TokenIds)[..limit]));
            }
        }

        return best >= m.BlockSize ? best : -1;
    }

    /// <summary>
    /// Fills a new context with the longest cached prefix of <paramref name="prefix"/>: full blocks from the directory by
    /// reference, then the best matching committed context's next rows (full blocks by reference, a partial block copied).
    /// Metadata lock held. Returns the tokens shared.
    /// </summary>
    private long SharePrefix(KvContext target, ReadOnlySpan<int> prefix)
    {
        ModelSchema m = target.Model;
        PrefixMatch match = Match(m, target.Root, prefix);
        int full = 0;
        var acquired = new KvBlock[m.NumLayers];
        for (; full < match.Chain.Count; full++)
        {
            int got = 0;
            for (; got < m.NumLayers; got++)
            {
                KvBlock? b = _directory.Acquire(match.Chain[full], got);
                if (b is null)
                {
                    break;
                }

                acquired[got] = b;
            }

            if (got < m.NumLayers)
            {
                // Freed between the walk and now: stop the shared prefix here.
                for (int i = 0; i < got; i++)
                {
                    acquired[i].Release();
                }

                break;
            }

            for (int layer = 0; layer < m.NumLayers; layer++)
            {
                target.Layers[layer].Blocks.Add(acquired[layer]);
            }
        }

        long shared = (long)full * m.BlockSize;
        if (full == match.Chain.Count && match.Source is KvContext source && match.Extra > 0)
        {
            lock (source.Gate)
            {
                for (int layer = 0; layer < m.NumLayers; layer++)
                {
                    CopyCommitted(source, target, layer, shared, match.Extra);
                }
            }

            shared += match.Extra;
        }

        for (int layer = 0; layer < m.NumLayers; layer++)
        {
            target.Layers[layer].Length = shared;
            target.CommittedLengths[layer] = shared;
        }

        target.AddTokens(prefix[..(int)shared]);
        return shared;
    }

    /// <summary>Appends source rows [from, from+count) of a layer to target (from is block-aligned): full blocks by reference, a partial one copied. Source gate held.</summary>
    private void CopyCommitted(KvContext source, KvContext target, int layer, long from, long count)
    {
        int b = source.Model.BlockSize;
        List<KvBlock> src = source.Layers[layer].Blocks;
        List<KvBlock> dst = target.Layers[layer].Blocks;
        long pos = from;
        long end = from + count;
        while (pos < end)
        {
            KvBlock block = src[(int)(pos / b)];
            int rows = (int)Math.Min(b, end - pos);
            if (rows == b)
            {
                block.AddRef();
                dst.Add(block);
            }
            else
            {
                Blocks.Pin(block);
                try
                {
                    dst.Add(block.CopyPrefix(rows));
                }
                finally
                {
                    Blocks.Unpin(block);
                }
            }

            pos += rows;
        }
    }

    /// <summary>
    /// Walks the hash chain of <paramref name="tokens"/> through the directory (full blocks cached in every layer), then looks
    /// among the contexts registered at the last matched chain value for the longest committed continuation. Metadata lock held.
    /// </summary>
    private PrefixMatch Match(ModelSchema m, UInt128 root, ReadOnlySpan<int> tokens)
    {
        int b = m.BlockSize;
        var chain = new List<UInt128>();
        UInt128 h = root;
        while ((chain.Count + 1) * b <= tokens.Length)
        {
            UInt128 next = BlockHashing.Next(h, tokens.Slice(chain.Count * b, b));
            if (!_directory.IsComplete(next, m.NumLayers))
            {
                break;
            }

            chain.Add(next);
            h = next;
        }

        long matched = (long)chain.Count * b;
        KvContext? best = null;
        long bestExtra = 0;
        List<KvContext>? candidates = matched < tokens.Length ? _directory.ContextsAt(h) : null;
        if (candidates is not null)
        {
            foreach (KvContext c in candidates)
            {
                lock (c.Gate)
                {
                    if (c.Deleted || c.Model != m)
                    {
                        continue;
                    }

                    long limit = Math.Min(c.CommittedTokens, tokens.Length);
                    ReadOnlySpan<int> mine = CollectionsMarshal.AsSpan(c.TokenIds);
                    long n = matched;
                    while (n < limit && mine[(int)n] == tokens[(int)n])
                    {
                        n++;
                    }

                    if (n - matched > bestExtra)
                    {
                        bestExtra = n - matched;
                        best = c;
                    }
                }
            }
        }

        return new PrefixMatch(chain, best, bestExtra);
    }

    /// <summary>Result of a prefix walk: chain values of fully cached blocks, and the best committed continuation.</summary>
    private sealed record PrefixMatch(List<UInt128> Chain, KvContext? Source, long Extra);
}

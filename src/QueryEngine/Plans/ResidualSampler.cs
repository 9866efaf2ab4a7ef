namespace KvDb.QueryEngine.Plans;

/// <summary>
/// Draws distinct positions uniformly from a KV head's residual: the layer's tokens outside the exclude range and
/// outside the exactly attended (heavy) set. A residual rank maps to its position through the heavy set by one
/// binary search, so nothing proportional to the layer is built; draws reject repeats, which stays cheap because
/// AUTO attends exactly long before a sample reaches a large share of the residual.
/// </summary>
public sealed class ResidualSampler
{
    private readonly long _excludeStart;
    private readonly long _excludeLength;
    private readonly long[] _shifted; // heavy[i]'s rank among non-excluded tokens, minus i: non-decreasing
    private readonly Random _random;
    private readonly HashSet<long> _drawn = [];

    /// <summary>Creates a sampler over <paramref name="tokens"/> tokens less <paramref name="exclude"/> and <paramref name="heavy"/> (ascending, outside the exclude range).</summary>
    public ResidualSampler(long tokens, ExcludeRange exclude, long[] heavy, Random random)
    {
        (long xs, long xe) = exclude.Normalized;
        _excludeStart = Math.Clamp(xs, 0, tokens);
        _excludeLength = Math.Clamp(xe, 0, tokens) - _excludeStart;
        if (_excludeLength < 0)
        {
            _excludeLength = 0;
        }

        _shifted = new long[heavy.Length];
        for (int i = 0; i < heavy.Length; i++)
        {
            long rank = heavy[i] >= _excludeStart + _excludeLength ? heavy[i] - _excludeLength : heavy[i];
            _shifted[i] = rank - i;
        }

        Count = tokens - _excludeLength - heavy.Length;
        _random = random;
    }

    /// <summary>Tokens in the residual.</summary>
    public long Count { get; }

    /// <summary>Positions drawn so far.</summary>
    public int Drawn => _drawn.Count;

    /// <summary>Draws <paramref name="into"/>.Length positions not drawn before (needs that many left in the residual).</summary>
    public void Draw(Span<long> into)
    {
        if (_drawn.Count + (long)into.Length > Count)
        {
            throw new ArgumentOutOfRangeException(nameof(into), $"the residual holds {Count} tokens, {_drawn.Count} drawn already");
        }

        for (int k = 0; k < into.Length; k++)
        {
            long rank;
            do
            {
                rank = _random.NextInt64(Count);
            }
            while (!_drawn.Add(rank));

            into[k] = PositionOf(rank);
        }
    }

    /// <summary>The position of the residual's <paramref name="rank"/>-th token (0-based, ascending positions).</summary>
    public long PositionOf(long rank)
    {
        // The j-th residual token has non-excluded rank j + #{i : rank(heavy[i]) − i ≤ j}.
        int lo = 0;
        int hi = _shifted.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_shifted[mid] <= rank)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        long kept = rank + lo;
        return kept < _excludeStart ? kept : kept + _excludeLength;
    }
}

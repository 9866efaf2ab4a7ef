using System.Numerics;

namespace KvDb.Store;

/// <summary>
/// TinyLFU's popularity estimate (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy",
/// 2017; the layout of Caffeine's <c>FrequencySketch</c>): a count-min sketch of 4-bit counters, 16 to a 64-bit word,
/// four counters per key (one per hash function, each in its own word). <see cref="Increment"/> adds one to each of a
/// key's counters that is below 15; <see cref="Frequency"/> is the smallest of them, so an estimate is never below the
/// true count since the last aging (collisions only add) and never above 15. Aging: after
/// <see cref="SampleSize"/> increments every counter is halved (a right shift), so old popularity fades and the sketch
/// follows a changing workload. Fixed memory: <see cref="Width"/> words of 8 bytes, sized once from the expected number
/// of distinct keys. Not thread-safe: the caller serializes every call (<see cref="BlockManager"/> holds one lock).
/// No call allocates.
/// </summary>
public sealed class FrequencySketch
{
    /// <summary>Largest value a counter reaches.</summary>
    public const int MaxCount = 15;

    private const ulong ResetMask = 0x7777_7777_7777_7777UL;
    private const ulong OneMask = 0x1111_1111_1111_1111UL;

    // Odd 64-bit multipliers (Caffeine's seeds), one per hash function.
    private static readonly ulong[] Seeds = [0xc3a5c85c97cb3127UL, 0xb492b66fbe98f273UL, 0x9ae16a3b2f90404fUL, 0xcbf29ce484222325UL];

    private readonly ulong[] _table;
    private readonly int _mask;
    private int _additions;

    /// <summary>A sketch for about <paramref name="expectedKeys"/> distinct keys (one word per key rounded up to a power of two, 16 to 2^22 words).</summary>
    public FrequencySketch(long expectedKeys)
    {
        long width = Math.Clamp(expectedKeys, 16, 1L << 22);
        _table = new ulong[(int)BitOperations.RoundUpToPowerOf2((ulong)width)];
        _mask = _table.Length - 1;
        SampleSize = 10 * _table.Length;
    }

    /// <summary>64-bit words in the table (16 counters each).</summary>
    public int Width => _table.Length;

    /// <summary>Counter increments after which every counter is halved (10 per word, as in the paper's W = 10·C).</summary>
    public int SampleSize { get; }

    /// <summary>Increments since the last halving (reduced by the halving, as Caffeine does).</summary>
    public int Additions => _additions;

    /// <summary>Times every counter was halved.</summary>
    public long Halvings { get; private set; }

    /// <summary>The estimated number of <see cref="Increment"/> calls for <paramref name="key"/> since aging began to fade them, 0 to 15.</summary>
    public int Frequency(ulong key)
    {
        ulong hash = Spread(key);
        int start = (int)(hash & 3) << 2;
        int frequency = MaxCount;
        for (int i = 0; i < 4; i++)
        {
            int index = IndexOf(hash, i);
            int count = (int)((_table[index] >> ((start + i) << 2)) & 0xF);
            frequency = Math.Min(frequency, count);
        }

        return frequency;
    }

    /// <summary>Records one access of <paramref name="key"/>; halves every counter once <see cref="SampleSize"/> increments accumulated.</summary>
    public void Increment(ulong key)
    {
        ulong hash = Spread(key);
        int start = (int)(hash & 3) << 2;
        bool added = false;
        for (int i = 0; i < 4; i++)
        {
            int index = IndexOf(hash, i);
            int offset = (start + i) << 2;
            ulong mask = 0xFUL << offset;
            if ((_table[index] & mask) != mask)
            {
                _table[index] += 1UL << offset;
                added = true;
            }
        }

        if (added && ++_additions >= SampleSize)
        {
            Halve();
        }
    }

    /// <summary>Halves every counter (the aging step); also called by <see cref="Increment"/>.</summary>
    public void Halve()
    {
        int odd = 0;
        for (int i = 0; i < _table.Length; i++)
        {
            odd += BitOperations.PopCount(_table[i] & OneMask);
            _table[i] = (_table[i] >> 1) & ResetMask;
        }

        // Each odd counter lost half an increment to truncation (Caffeine's correction).
        _additions = Math.Max(0, (_additions - (odd >> 2)) >> 1);
        Halvings++;
    }

    /// <summary>Sets every counter to zero.</summary>
    public void Clear()
    {
        Array.Clear(_table);
        _additions = 0;
    }

    private int IndexOf(ulong hash, int i)
    {
        ulong h = (hash + Seeds[i]) * Seeds[i];
        h += h >> 32;
        return (int)h & _mask;
    }

    /// <summary>A 64-bit finalizer (splitmix64), so keys that differ in few bits land on unrelated counters.</summary>
    private static ulong Spread(ulong x)
    {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9UL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebUL;
        x ^= x >> 31;
        return x;
    }
}

namespace KvDb.Workload;

/// <summary>
/// SplitMix64 with Box–Muller normals: tiny, fast and bit-for-bit reproducible on every runtime,
/// which System.Random does not promise across versions.
/// </summary>
public struct DeterministicRandom
{
    private ulong _state;
    private double _spare;
    private bool _hasSpare;

    /// <summary>Seeds the generator; equal seeds give equal streams.</summary>
    public DeterministicRandom(ulong seed)
    {
        _state = seed;
        _spare = 0;
        _hasSpare = false;
    }

    /// <summary>Mixes several integers into one well-spread seed.</summary>
    public static ulong Mix(ulong a, ulong b, ulong c = 0)
    {
        ulong x = a * 0x9E3779B97F4A7C15UL ^ (b + 0x632BE59BD9B4E019UL) * 0xBF58476D1CE4E5B9UL ^ (c + 0x85EBCA77C2B2AE63UL) * 0x94D049BB133111EBUL;
        x ^= x >> 31;
        x *= 0xD6E8FEB86659FD93UL;
        x ^= x >> 32;
        return x;
    }

    /// <summary>Next 64 uniformly random bits.</summary>
    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, bound).</summary>
    public int NextInt(int bound) => (int)(NextDouble() * bound);

    /// <summary>Standard normal.</summary>
    public double NextGaussian()
    {
        if (_hasSpare)
        {
            _hasSpare = false;
            return _spare;
        }

        double u1 = 1.0 - NextDouble();
        double u2 = NextDouble();
        double radius = Math.Sqrt(-2.0 * Math.Log(u1));
        _spare = radius * Math.Sin(2 * Math.PI * u2);
        _hasSpare = true;
        return radius * Math.Cos(2 * Math.PI * u2);
    }
}

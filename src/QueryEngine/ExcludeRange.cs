using KvDb.Store;

namespace KvDb.QueryEngine;

/// <summary>
/// The positions a request leaves out (the engine's local window), as a half-open range; an unset range
/// (End ≤ Start, e.g. [0, 0)) excludes nothing. Every plan and the kernels read it through this one type.
/// </summary>
public readonly record struct ExcludeRange(long Start, long End)
{
    /// <summary>True when nothing is excluded.</summary>
    public bool IsEmpty => End <= Start;

    /// <summary>The range as the kernels take it: [Start, End), or [0, 0) when empty.</summary>
    public (long Start, long End) Normalized => IsEmpty ? (0, 0) : (Start, End);

    /// <summary>Throws <see cref="KvDbException"/> (invalid argument) unless 0 ≤ start and (end = 0 or start ≤ end).</summary>
    public void Validate()
    {
        if (Start < 0 || End < 0 || (End != 0 && End < Start))
        {
            throw KvDbException.Invalid($"exclude must be a half-open range 0 ≤ start ≤ end, got [{Start}, {End}); send an unset range to exclude nothing");
        }
    }

    /// <summary>True when <paramref name="position"/> is excluded.</summary>
    public bool Contains(long position) => !IsEmpty && position >= Start && position < End;

    /// <summary>How many of the positions [0, <paramref name="tokens"/>) are excluded.</summary>
    public long CountWithin(long tokens) => IsEmpty ? 0 : Math.Max(0, Math.Min(End, tokens) - Math.Max(Start, 0));
}

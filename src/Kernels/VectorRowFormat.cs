using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KvDb.Kernels;

/// <summary>
/// How the fused kernel turns 32 stored elements of a K or V row into two f32 vectors. A format may deliver
/// the elements in a permuted order, as long as it says where each one lands (<see cref="StoredIndex"/>):
/// queries are laid out, and outputs read back, in that same order, which lets bf16 widen with one shift
/// and one mask instead of a cross-lane unpack.
/// </summary>
internal unsafe interface IVectorRowFormat
{
    /// <summary>Bytes per stored element.</summary>
    static abstract int ElementSize { get; }

    /// <summary>Loads the 32 elements at <paramref name="source"/> (64-byte vectors, unaligned allowed).</summary>
    static abstract void Load32(byte* source, out Vector512<float> first, out Vector512<float> second);

    /// <summary>
    /// The Vector256 form of <see cref="Load32"/>: half <paramref name="half"/> (0 or 1) of the 32-element chunk at
    /// <paramref name="chunk"/> as the stored-order elements [8·half, 8·half + 8) and [16 + 8·half, 24 + 8·half),
    /// so the AVX2 loops see exactly the element order of Load32 and share <see cref="StoredIndex"/>.
    /// </summary>
    static abstract void Load16(byte* chunk, int half, out Vector256<float> first, out Vector256<float> second);

    /// <summary>Where logical element <paramref name="index"/> of a row sits in the order Load32 delivers.</summary>
    static abstract int StoredIndex(int index);
}

/// <summary>f32 rows: loaded as they are.</summary>
internal readonly unsafe struct F32RowFormat : IVectorRowFormat
{
    public static int ElementSize => sizeof(float);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load32(byte* source, out Vector512<float> first, out Vector512<float> second)
    {
        first = Vector512.Load((float*)source);
        second = Vector512.Load((float*)source + Vector512<float>.Count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(byte* chunk, int half, out Vector256<float> first, out Vector256<float> second)
    {
        float* f = (float*)chunk + (8 * half);
        first = Vector256.Load(f);
        second = Vector256.Load(f + 16);
    }

    public static int StoredIndex(int index) => index;
}

/// <summary>
/// bf16 rows read as 32-bit lanes: each lane holds an even element in its low half and the next odd one in
/// its high half. Shifting left by 16 yields the even elements as f32, masking the low half off yields the
/// odd ones, so a 32-element chunk comes out as [evens, odds].
/// </summary>
internal readonly unsafe struct BFloat16RowFormat : IVectorRowFormat
{
    public static int ElementSize => sizeof(ushort);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load32(byte* source, out Vector512<float> first, out Vector512<float> second)
    {
        Vector512<uint> pairs = Vector512.Load((uint*)source);
        first = Vector512.ShiftLeft(pairs, 16).AsSingle();
        second = (pairs & Vector512.Create(0xFFFF0000u)).AsSingle();
    }

    /// <summary>Elements 16·half.. of the chunk: their evens are stored elements 8·half.., their odds 16 + 8·half...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(byte* chunk, int half, out Vector256<float> first, out Vector256<float> second)
    {
        Vector256<uint> pairs = Vector256.Load((uint*)chunk + (8 * half));
        first = Vector256.ShiftLeft(pairs, 16).AsSingle();
        second = (pairs & Vector256.Create(0xFFFF0000u)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int StoredIndex(int index) => (index & ~31) + ((index & 1) << 4) + ((index & 31) >> 1);
}

using System.Runtime.InteropServices;

namespace KvDb.Kernels;

/// <summary>
/// Per-thread native scratch for attention kernels, grown on demand and reused, so a query allocates
/// nothing per token or per block. Unsafe: the buffers are owned by the thread that created them
/// and are never shared, so pointers into them stay valid until the next Ensure on that thread.
/// </summary>
internal sealed unsafe class AttentionScratch
{
    [ThreadStatic]
    private static AttentionScratch? t_current;

    private float* _buffer;
    private long _capacity;

    public static AttentionScratch Current => t_current ??= new AttentionScratch();

    /// <summary>Returns at least <paramref name="floats"/> floats, 64-byte aligned; contents undefined.</summary>
    public float* Ensure(long floats)
    {
        if (floats > _capacity)
        {
            if (_buffer != null)
            {
                NativeMemory.AlignedFree(_buffer);
            }

            long grown = Math.Max(floats, _capacity * 2);
            _buffer = (float*)NativeMemory.AlignedAlloc((nuint)(grown * sizeof(float)), 64);
            _capacity = grown;
        }

        return _buffer;
    }

    ~AttentionScratch()
    {
        if (_buffer != null)
        {
            NativeMemory.AlignedFree(_buffer);
        }
    }
}

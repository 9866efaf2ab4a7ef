using System.Runtime.InteropServices;

namespace KvDb.Store;

/// <summary>
/// The CPU tier's memory: fixed-size slots carved from large native slabs, outside the GC heap, with a
/// byte budget. Slots of one size are recycled through a free list, so steady-state appends and
/// evictions allocate nothing new. Unsafe: a slot's address is valid from Allocate until Free and is
/// never handed to two owners at once; slabs are released only when the arena is disposed.
/// </summary>
public sealed unsafe class NativeSlabArena : IDisposable
{
    private const long SlabTargetBytes = 32L << 20;

    private readonly object _gate = new();
    private readonly Dictionary<long, SlotClass> _classes = [];
    private readonly List<nint> _slabs = [];
    private readonly long _budgetBytes;
    private long _usedBytes;
    private long _reservedBytes;
    private bool _disposed;

    /// <summary>Creates an arena that refuses allocations beyond <paramref name="budgetBytes"/> of live slots.</summary>
    public NativeSlabArena(long budgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(budgetBytes);
        _budgetBytes = budgetBytes;
    }

    /// <summary>The configured budget.</summary>
    public long BudgetBytes => _budgetBytes;

    /// <summary>Bytes in live slots.</summary>
    public long UsedBytes => Interlocked.Read(ref _usedBytes);

    /// <summary>Bytes reserved from the OS in slabs (live and free slots).</summary>
    public long ReservedBytes => Interlocked.Read(ref _reservedBytes);

    /// <summary>Returns a 64-byte-aligned slot of <paramref name="slotBytes"/> or null when the budget is full.</summary>
    public nint TryAllocate(long slotBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slotBytes);
        long rounded = (slotBytes + 63) & ~63L;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_usedBytes + rounded > _budgetBytes)
            {
                return 0;
            }

            if (!_classes.TryGetValue(rounded, out SlotClass? cls))
            {
                cls = new SlotClass();
                _classes.Add(rounded, cls);
            }

            if (cls.Free.Count == 0)
            {
                long slots = Math.Max(1, SlabTargetBytes / rounded);
                // A slab never exceeds what the budget could ever use, so small budgets stay small in RSS.
                slots = Math.Max(1, Math.Min(slots, (_budgetBytes - _usedBytes) / rounded));
                // Huge pages: sparse plans read scattered rows, and a 4 KiB page per row doubles each miss.
                nint slab = KvDb.Kernels.HugePageMemory.Allocate(slots * rounded);
                _slabs.Add(slab);
                _reservedBytes += slots * rounded;
                for (long i = slots - 1; i >= 0; i--)
                {
                    cls.Free.Push(slab + (nint)(i * rounded));
                }
            }

            _usedBytes += rounded;
            return cls.Free.Pop();
        }
    }

    /// <summary>Returns a slot obtained from <see cref="TryAllocate"/> with the same size.</summary>
    public void Free(nint slot, long slotBytes)
    {
        long rounded = (slotBytes + 63) & ~63L;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _classes[rounded].Free.Push(slot);
            _usedBytes -= rounded;
        }
    }

    /// <summary>Releases every slab; outstanding slots become invalid.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (nint slab in _slabs)
            {
                KvDb.Kernels.HugePageMemory.Free(slab);
            }

            _slabs.Clear();
            _classes.Clear();
        }
    }

    private sealed class SlotClass
    {
        public Stack<nint> Free { get; } = new();
    }
}

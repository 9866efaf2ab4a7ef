namespace KvDb.Store;

// The scrub: once after start, every disk-only block is read and checked against its checksum.
public partial class KvStore
{
    private int _scrubPending;

    /// <summary>
    /// Once after start, in the background: reads every block that is only on disk and checks its checksum, so
    /// corruption shows up in the stats and the log without waiting for a reader (which would get DATA_LOSS).
    /// </summary>
    private void ScrubOnce()
    {
        if (Interlocked.Exchange(ref _scrubPending, 0) == 0)
        {
            return;
        }

        var seen = new HashSet<KvBlock>(ReferenceEqualityComparer.Instance);
        var held = new List<KvBlock>();
        foreach (KvContext c in _contexts.Values)
        {
            lock (c.Gate)
            {
                foreach (ContextLayer l in c.Layers)
                {
                    foreach (KvBlock b in l.Blocks)
                    {
                        if (!b.IsResident && b.DiskAddress >= 0 && seen.Add(b) && b.TryAddRef())
                        {
                            held.Add(b);
                        }
                    }
                }
            }
        }

        try
        {
            foreach (KvBlock b in held)
            {
                if (Volatile.Read(ref _disposed) != 0)
                {
                    return;
                }

                if (!Blocks.Verify(b))
                {
                    Report($"block {b.Address} failed its checksum on disk; reads of the layers holding it fail with DATA_LOSS");
                }
            }
        }
        finally
        {
            foreach (KvBlock b in held)
            {
                b.Release();
            }
        }
    }
}

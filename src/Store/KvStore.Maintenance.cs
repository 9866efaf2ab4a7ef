namespace KvDb.Store;

// Background maintenance (TTL expiry, the start-up scrub, due checkpoints, due compactions) and explicit demotion.
public partial class KvStore
{
    private readonly Timer? _timer;
    private long _expired;
    private int _maintenanceRunning;

    /// <summary>Deletes expired contexts and takes a checkpoint when one is due.</summary>
    private void Maintain()
    {
        if (Interlocked.Exchange(ref _maintenanceRunning, 1) != 0)
        {
            return;
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            Volatile.Write(ref _maintenanceRunning, 0);
            return;
        }

        try
        {
            long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            foreach (KvContext c in _contexts.Values)
            {
                if (c.ExpiresAtUnixMs > 0 && c.ExpiresAtUnixMs <= now && DeleteContext(c.Id, KvDb.Store.Events.KvEventKind.ContextExpired))
                {
                    Interlocked.Increment(ref _expired);
                }
            }

            ScrubOnce();
            MaybeCheckpoint();
            MaybeCompact();
        }
        catch (Exception e) when (e is KvDbException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            Report("background maintenance failed: " + e.Message);
        }
        finally
        {
            Volatile.Write(ref _maintenanceRunning, 0);
        }
    }

    /// <inheritdoc />
    public (long Blocks, long Bytes) Evict(long targetCpuBytes)
    {
        if (!Blocks.CanSpill)
        {
            throw new KvDbException(KvDbErrorCode.FailedPrecondition, "this server keeps everything in memory, so blocks cannot be demoted; start it with --data DIR to get a disk tier");
        }

        if (targetCpuBytes < 0)
        {
            throw KvDbException.Invalid($"target_cpu_bytes must be ≥ 0, got {targetCpuBytes}");
        }

        return Blocks.Demote(targetCpuBytes);
    }
}

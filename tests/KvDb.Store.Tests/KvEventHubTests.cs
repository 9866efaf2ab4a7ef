using KvDb.Store.Events;

namespace KvDb.Store.Tests;

/// <summary>The event hub's replay ring: a resuming watcher gets every later event once, in order, and is told what it lost.</summary>
public sealed class KvEventHubTests
{
    [Fact]
    public void A_resume_replays_the_kept_events_after_the_point_then_continues_live_and_counts_the_lost_ones()
    {
        var hub = new KvEventHub(replayCapacity: 16);
        for (int i = 0; i < 100; i++)
        {
            hub.Emit(KvEventKind.Stored, "m", "b" + i, 16, "cpu");
        }

        using KvEventSubscription resumed = hub.Subscribe(64, after: 10, out List<KvEvent> replay, out long lost);
        Assert.Equal(100 - 16 - 10, lost);
        Assert.Equal(Enumerable.Range(85, 16).Select(s => (long)s), replay.Select(e => e.Sequence));
        Assert.Equal("b84", replay[0].Block);

        for (int i = 100; i < 105; i++)
        {
            hub.Emit(KvEventKind.Demoted, "m", "b" + i, 16, "disk");
        }

        var live = new List<long>();
        while (resumed.Reader.TryRead(out KvEvent? e))
        {
            live.Add(e.Sequence);
        }

        Assert.Equal([101L, 102, 103, 104, 105], live);
        Assert.Equal(105, hub.LastSequence);

        // Resuming at the latest event replays nothing; a point beyond it (another server's sequence) is refused.
        using (hub.Subscribe(64, after: 105, out List<KvEvent> none, out long noneLost))
        {
            Assert.Equal((0, 0L), (none.Count, noneLost));
        }

        Assert.Equal(KvDbErrorCode.InvalidArgument, Assert.Throws<KvDbException>(() => hub.Subscribe(64, after: 106, out _, out _)).Code);
        Assert.Equal(KvDbErrorCode.InvalidArgument, Assert.Throws<KvDbException>(() => hub.Subscribe(64, after: -1, out _, out _)).Code);
    }
}

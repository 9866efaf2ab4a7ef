using System.Threading.Channels;

namespace KvDb.Store.Events;

/// <summary>
/// Fans the store's block events out to subscribers. Emitting costs one volatile read when nobody listens. Each
/// subscriber has a bounded buffer: one that falls behind loses the oldest events (never blocks the store) and sees
/// the gap in the sequence numbers, and <see cref="KvEventSubscription.Dropped"/> counts what it lost.
/// </summary>
public sealed class KvEventHub
{
    private readonly Lock _gate = new();
    private KvEventSubscription[] _subscribers = [];
    private long _sequence;

    /// <summary>Subscribes with a buffer of <paramref name="capacity"/> events; dispose the subscription to leave.</summary>
    public KvEventSubscription Subscribe(int capacity = 4096)
    {
        var subscription = new KvEventSubscription(this, Math.Max(16, capacity));
        lock (_gate)
        {
            _subscribers = [.. _subscribers, subscription];
        }

        return subscription;
    }

    /// <summary>Publishes an event to every subscriber (no-op without subscribers).</summary>
    public void Emit(KvEventKind kind, string model, string block, int tokens, string tier)
    {
        KvEventSubscription[] subscribers = Volatile.Read(ref _subscribers);
        if (subscribers.Length == 0)
        {
            return;
        }

        var e = new KvEvent(Interlocked.Increment(ref _sequence), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), kind, model, block, tokens, tier);
        foreach (KvEventSubscription s in subscribers)
        {
            s.Offer(e);
        }
    }

    internal void Remove(KvEventSubscription subscription)
    {
        lock (_gate)
        {
            _subscribers = Array.FindAll(_subscribers, s => !ReferenceEquals(s, subscription));
        }
    }
}

/// <summary>One subscriber's bounded stream of events.</summary>
public sealed class KvEventSubscription : IDisposable
{
    private readonly KvEventHub _hub;
    private readonly Channel<KvEvent> _channel;
    private long _dropped;

    internal KvEventSubscription(KvEventHub hub, int capacity)
    {
        _hub = hub;
        _channel = Channel.CreateBounded<KvEvent>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true },
            _ => Interlocked.Increment(ref _dropped));
    }

    /// <summary>The events, in order.</summary>
    public ChannelReader<KvEvent> Reader => _channel.Reader;

    /// <summary>Events this subscriber lost because it fell behind.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    public void Dispose()
    {
        _hub.Remove(this);
        _channel.Writer.TryComplete();
    }

    internal void Offer(KvEvent e) => _channel.Writer.TryWrite(e);
}

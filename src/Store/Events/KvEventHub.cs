using System.Threading.Channels;

namespace KvDb.Store.Events;

/// <summary>
/// Fans the store's block events out to subscribers and keeps the last <see cref="ReplayCapacity"/> of them, so a
/// watcher that disconnects can resume after the last sequence it saw and get every later event exactly once, in
/// order (<see cref="Subscribe(int, long, out List{KvEvent}, out long)"/>). Sequence numbers start at 1 when the
/// store opens. Each subscriber has a bounded buffer: one that falls behind loses the oldest events (never blocks the
/// store) and sees the gap in the sequence numbers; <see cref="KvEventSubscription.Dropped"/> counts what it lost.
/// </summary>
public sealed class KvEventHub
{
    /// <summary>Events kept for resuming watchers by default.</summary>
    public const int DefaultReplayCapacity = 65536;

    private readonly Lock _gate = new();
    private readonly KvEvent?[] _ring;
    private KvEventSubscription[] _subscribers = [];
    private long _sequence;

    /// <summary>Creates a hub that keeps the last <paramref name="replayCapacity"/> events.</summary>
    public KvEventHub(int replayCapacity = DefaultReplayCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(replayCapacity, 1);
        _ring = new KvEvent?[replayCapacity];
    }

    /// <summary>How many of the latest events a resuming watcher can get back.</summary>
    public int ReplayCapacity => _ring.Length;

    /// <summary>The sequence number of the latest event (0 before the first).</summary>
    public long LastSequence
    {
        get
        {
            lock (_gate)
            {
                return _sequence;
            }
        }
    }

    /// <summary>Subscribes to live events with a buffer of <paramref name="capacity"/> events; dispose the subscription to leave.</summary>
    public KvEventSubscription Subscribe(int capacity = 4096) => Subscribe(capacity, long.MaxValue, out _, out _);

    /// <summary>
    /// Subscribes and, in the same step, returns the kept events after sequence <paramref name="after"/> (none when it is
    /// <see cref="long.MaxValue"/>): the replay followed by the subscription's events is every event after
    /// <paramref name="after"/>, each once, in order. <paramref name="lost"/> counts the events after it that are no longer
    /// kept (the replay then starts later); throws when <paramref name="after"/> is beyond the latest event.
    /// </summary>
    public KvEventSubscription Subscribe(int capacity, long after, out List<KvEvent> replay, out long lost)
    {
        var subscription = new KvEventSubscription(this, Math.Max(16, capacity));
        replay = [];
        lost = 0;
        lock (_gate)
        {
            if (after != long.MaxValue)
            {
                replay = SinceLocked(after, out lost);
            }

            _subscribers = [.. _subscribers, subscription];
        }

        return subscription;
    }

    /// <summary>
    /// The kept events after sequence <paramref name="after"/>, in order; <paramref name="lost"/> counts those after it no
    /// longer kept. A subscriber whose buffer overflowed fills the hole from here (the ring holds far more than a buffer).
    /// </summary>
    public List<KvEvent> Since(long after, out long lost)
    {
        lock (_gate)
        {
            return SinceLocked(after, out lost);
        }
    }

    private List<KvEvent> SinceLocked(long after, out long lost)
    {
        if (after < 0 || after > _sequence)
        {
            throw KvDbException.Invalid($"after_sequence {after} is not an event of this server (latest {_sequence}; sequences restart at 1 when the server starts): resume with 0 for every event kept, or leave it unset for live events");
        }

        long first = Math.Max(after + 1, _sequence - _ring.Length + 1);
        lost = first - (after + 1);
        var events = new List<KvEvent>((int)(_sequence - first + 1));
        for (long s = first; s <= _sequence; s++)
        {
            events.Add(_ring[s % _ring.Length]!);
        }

        return events;
    }

    /// <summary>Records an event and publishes it to every subscriber, in sequence order.</summary>
    public void Emit(KvEventKind kind, string model, string block, int tokens, string tier)
    {
        lock (_gate)
        {
            var e = new KvEvent(++_sequence, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), kind, model, block, tokens, tier);
            _ring[e.Sequence % _ring.Length] = e;
            foreach (KvEventSubscription s in _subscribers)
            {
                s.Offer(e);
            }
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

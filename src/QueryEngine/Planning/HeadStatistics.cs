using System.Collections.Concurrent;

namespace KvDb.QueryEngine.Planning;

/// <summary>
/// Cheap memory of how AUTO's recent queries went per (context, layer, KV head): how often a head needed exact
/// attention, how large a share of the residual its sample was, how much mass its heavy hitters held. The optimizer
/// answers a head that needed exact attention in its last <see cref="ExactStreak"/> queries exactly without a pilot,
/// re-trying sampling every <see cref="RetryEvery"/> queries in case its attention became peaked.
/// </summary>
public sealed class HeadStatistics
{
    /// <summary>Consecutive exact answers after which a head skips the pilot.</summary>
    public const int ExactStreak = 2;

    /// <summary>A head answered exactly for its history re-tries sampling this often.</summary>
    public const int RetryEvery = 64;

    /// <summary>(context, layer) pairs remembered; past it the table starts over (statistics are a hint, not state).</summary>
    public const int MaxLayers = 1 << 16;

    /// <summary>The most KV heads one <see cref="Describe"/> copies; past it the report is cut at a layer boundary.</summary>
    public const int MaxDescribedHeads = 1 << 16;

    private const double Smoothing = 0.2;

    private readonly ConcurrentDictionary<(string Context, int Layer), Entry[]> _layers = new();

    /// <summary>Whether KV head <paramref name="kvHead"/> should be answered exactly without trying to sample.</summary>
    public bool ShouldAnswerExactly(string context, int layer, int kvHead, int kvHeads)
    {
        Entry e = Get(context, layer, kvHead, kvHeads);
        lock (e)
        {
            if (e.ExactRun < ExactStreak)
            {
                return false;
            }

            e.SkippedSinceTry++;
            if (e.SkippedSinceTry >= RetryEvery)
            {
                e.SkippedSinceTry = 0;
                return false;
            }

            return true;
        }
    }

    /// <summary>Records how a query went for a KV head: answered exactly (the contract needed it) or sampled.</summary>
    public void Record(string context, int layer, int kvHead, int kvHeads, bool neededExact, double sampleShare, double massExact)
    {
        Entry e = Get(context, layer, kvHead, kvHeads);
        lock (e)
        {
            e.Queries++;
            e.ExactRun = neededExact ? e.ExactRun + 1 : 0;
            e.ExactAnswers += neededExact ? 1 : 0;
            e.SampleShare = e.Queries == 1 ? sampleShare : e.SampleShare + (Smoothing * (sampleShare - e.SampleShare));
            if (double.IsFinite(massExact))
            {
                // The first measured mass seeds the average: a head that went exact first (no mass) does not start from 0.
                e.MassSamples++;
                e.MassExact = e.MassSamples == 1 ? massExact : e.MassExact + (Smoothing * (massExact - e.MassExact));
            }
        }
    }

    /// <summary>Heavy hitters per query row the head settled on, or <paramref name="fallback"/> before its first sampled query.</summary>
    public int HeavyPerRow(string context, int layer, int kvHead, int kvHeads, int fallback)
    {
        Entry e = Get(context, layer, kvHead, kvHeads);
        lock (e)
        {
            return e.HeavyPerRow > 0 ? e.HeavyPerRow : fallback;
        }
    }

    /// <summary>Sets the heavy hitters per query row the head's next query names.</summary>
    public void SetHeavyPerRow(string context, int layer, int kvHead, int kvHeads, int perRow)
    {
        Entry e = Get(context, layer, kvHead, kvHeads);
        lock (e)
        {
            e.HeavyPerRow = perRow;
        }
    }

    /// <summary>A copy of KV head <paramref name="kvHead"/>'s statistics (zeros when none).</summary>
    public HeadStatisticsSnapshot Snapshot(string context, int layer, int kvHead)
    {
        if (!_layers.TryGetValue((context, layer), out Entry[]? entries) || kvHead >= entries.Length)
        {
            return default;
        }

        Entry e = entries[kvHead];
        lock (e)
        {
            return Copy(e);
        }
    }

    /// <summary>
    /// A copy of every KV head's statistics in layers 0..<paramref name="layers"/>−1 of <paramref name="context"/> that
    /// AUTO recorded anything for, by layer (layers with none are left out). Each head is copied under its own lock, so
    /// a head's numbers are consistent; queries answered meanwhile may land in some heads and not others. Probes only the
    /// context's layers (no scan of the table) and copies at most <see cref="MaxDescribedHeads"/> heads
    /// (<see cref="ContextHeadStatistics.Truncated"/> past it). Off the query path: it allocates, queries do not.
    /// </summary>
    public ContextHeadStatistics Describe(string context, int layers)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegative(layers);
        var described = new List<LayerHeadStatistics>();
        int copied = 0;
        for (int layer = 0; layer < layers; layer++)
        {
            if (!_layers.TryGetValue((context, layer), out Entry[]? entries))
            {
                continue;
            }

            if (copied + entries.Length > MaxDescribedHeads)
            {
                return new ContextHeadStatistics(context, described, Truncated: true);
            }

            var heads = new HeadStatisticsSnapshot[entries.Length];
            for (int h = 0; h < entries.Length; h++)
            {
                Entry e = entries[h];
                lock (e)
                {
                    heads[h] = Copy(e);
                }
            }

            copied += heads.Length;
            described.Add(new LayerHeadStatistics(layer, heads));
        }

        return new ContextHeadStatistics(context, described, Truncated: false);
    }

    /// <summary>Forgets a context's statistics (deleted contexts).</summary>
    public void Forget(string context)
    {
        foreach ((string Context, int Layer) key in _layers.Keys)
        {
            if (key.Context == context)
            {
                _layers.TryRemove(key, out _);
            }
        }
    }

    private Entry Get(string context, int layer, int kvHead, int kvHeads)
    {
        if (_layers.Count >= MaxLayers && !_layers.ContainsKey((context, layer)))
        {
            _layers.Clear();
        }

        Entry[] entries = _layers.GetOrAdd((context, layer), static (_, n) => NewEntries(n), kvHeads);
        return entries[kvHead];
    }

    private static HeadStatisticsSnapshot Copy(Entry e) =>
        new(e.Queries, e.ExactAnswers, e.ExactRun, e.SampleShare, e.MassExact, e.HeavyPerRow, e.MassSamples);

    private static Entry[] NewEntries(int n)
    {
        var entries = new Entry[n];
        for (int i = 0; i < n; i++)
        {
            entries[i] = new Entry();
        }

        return entries;
    }

    private sealed class Entry
    {
        public long Queries;
        public long ExactAnswers;
        public int ExactRun;
        public int SkippedSinceTry;
        public double SampleShare;
        public double MassExact;
        public long MassSamples;
        public int HeavyPerRow;
    }
}

/// <summary>
/// A KV head's AUTO statistics: queries, how many needed exact attention, the current exact streak, the smoothed sample
/// share of the residual and heavy-hitter mass, the heavy hitters per row its next query names (0: the default), and
/// how many answers measured a heavy mass (sampled or heavy-only ones; <see cref="MassExact"/> means nothing while 0).
/// </summary>
public readonly record struct HeadStatisticsSnapshot(long Queries, long ExactAnswers, int ExactRun, double SampleShare, double MassExact, int HeavyPerRow = 0, long MassSamples = 0)
{
    /// <summary>The share of the recorded queries that needed exact attention (0 before any).</summary>
    public double ExactShare => Queries == 0 ? 0 : (double)ExactAnswers / Queries;
}

/// <summary>The AUTO statistics of one layer of a context: one snapshot per KV head, indexed by KV head.</summary>
public sealed record LayerHeadStatistics(int Layer, IReadOnlyList<HeadStatisticsSnapshot> Heads);

/// <summary>
/// What <see cref="HeadStatistics.Describe"/> copied for a context: the layers AUTO recorded anything for, in order;
/// <see cref="Truncated"/> when it stopped at <see cref="HeadStatistics.MaxDescribedHeads"/>.
/// </summary>
public sealed record ContextHeadStatistics(string Context, IReadOnlyList<LayerHeadStatistics> Layers, bool Truncated);

using Catalog = KvDb.Index.Catalog;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Explain;
using KvDb.Store;
using Engine = KvDb.QueryEngine;
using EngineExplain = KvDb.QueryEngine.Explain;
using Wire = KvDb.Protocol.V1;

namespace KvDb.Server;

/// <summary>Conversions between wire messages and domain records.</summary>
internal static class WireMapping
{
    public static ModelSchema ToSchema(Model? m)
    {
        if (m is null)
        {
            throw KvDbException.Invalid("CreateModelRequest.model is missing; send a Model with name, num_layers, num_query_heads, num_kv_heads, head_dim and dtype");
        }

        return new ModelSchema(m.Name, m.NumLayers, m.NumQueryHeads, m.NumKvHeads, m.HeadDim, TensorCodec.ToKernel(m.Dtype), m.BlockSize, m.SoftmaxScale);
    }

    public static Model ToWire(ModelSchema s) => new()
    {
        Name = s.Name,
        NumLayers = s.NumLayers,
        NumQueryHeads = s.NumQueryHeads,
        NumKvHeads = s.NumKvHeads,
        HeadDim = s.HeadDim,
        Dtype = TensorCodec.ToWire(s.DType),
        BlockSize = s.BlockSize,
        SoftmaxScale = s.SoftmaxScale,
    };

    public static Context ToWire(ContextInfo c)
    {
        var ctx = new Context { Id = c.Id, Model = c.Model, Namespace = c.Namespace, NumTokens = c.NumTokens, Bytes = c.Bytes, CreatedUnixMs = c.CreatedUnixMs, ExpiresAtUnixMs = c.ExpiresAtUnixMs, Pinned = c.Pinned, PinTier = c.Pinned ? ToWire(c.PinTier) : Protocol.V1.PinTier.Unspecified };
        ctx.LayerTokens.Add(c.LayerTokens);
        return ctx;
    }

    /// <summary>The largest plan budget passed on: more tokens than any layer holds (a larger one means the same, all of them).</summary>
    public const long MaxBudget = int.MaxValue;

    /// <summary>The request's plan; a tolerance field left 0 takes <paramref name="defaults"/>' value.</summary>
    public static PlanRequest ToPlan(Plan? p, QualityContract defaults)
    {
        if (p is null)
        {
            return PlanRequest.Auto;
        }

        if (p.Budget < 0)
        {
            throw KvDbException.Invalid($"plan.budget must be ≥ 0 (0 = the plan's default; a budget past the context's tokens selects them all), got {p.Budget}");
        }

        if (!float.IsFinite(p.Beta) || p.Beta < 0)
        {
            throw KvDbException.Invalid($"plan.beta must be a finite number ≥ 0 (0 = the default, alpha = 1e-3), got {p.Beta}");
        }

        // A budget is a count of tokens: past int.MaxValue it cannot mean more than "all of them", and no plan may size
        // anything by it (plans clamp to the indexed tokens as well).
        long budget = Math.Min(p.Budget, MaxBudget);

        QualityContract? quality = p.Epsilon == 0 && p.Delta == 0 && p.MaxLatencyUs == 0
            ? null
            : QualityContract.FromWire(p.Epsilon, p.Delta, p.MaxLatencyUs, defaults);
        return new PlanRequest((QueryEngine.PlanKind)(int)p.Kind, budget, p.Beta, quality);
    }

    /// <summary>The wire stats of an answer: counters, time, the rendered explain, the contract and each query head's quality.</summary>
    public static AttendStats ToWire(AttentionStats stats)
    {
        var wire = new AttendStats
        {
            Plan = stats.Plan,
            TokensScored = stats.TokensScored,
            TokensAttended = stats.TokensAttended,
            BytesRead = stats.BytesRead,
            ServerMicros = stats.ServerMicros,
            Explain = ExplainText.Render(stats.Explain),
            Epsilon = stats.Contract?.Epsilon ?? 0,
            Delta = stats.Contract?.Delta ?? 0,
        };
        if (stats.Quality is { } quality)
        {
            foreach (Engine.HeadQuality h in quality)
            {
                wire.HeadQuality.Add(new Wire.HeadQuality
                {
                    Query = h.Query,
                    QueryHead = h.QueryHead,
                    KvHead = h.KvHead,
                    Plan = h.Plan,
                    MassExact = h.MassExact,
                    ErrorBound = h.ErrorBound,
                    PredictedError = Finite(h.PredictedError),
                    TokensExact = h.TokensExact,
                    TokensSampled = h.TokensSampled,
                    TokensResidual = h.TokensResidual,
                });
            }
        }

        return wire;
    }

    /// <summary>The structured explain of an answer, with its wire stats.</summary>
    public static ExplainResponse ToWire(AttentionExplain e, AttendStats stats)
    {
        var wire = new ExplainResponse
        {
            Requested = (Wire.PlanKind)(int)e.Requested,
            Plan = e.Plan,
            Decision = ToWire(e.Decision),
            Layer = e.Layer,
            LayerTokens = e.LayerTokens,
            Epsilon = e.Contract?.Epsilon ?? 0,
            Delta = e.Contract?.Delta ?? 0,
            MaxLatencyUs = e.Contract?.MaxLatencyMicros ?? 0,
            EstimatedRows = e.Estimated.Rows,
            EstimatedBytes = e.Estimated.Bytes,
            ActualTokensScored = e.Actual.TokensScored,
            ActualTokensAttended = e.Actual.TokensAttended,
            ActualBytesRead = e.Actual.BytesRead,
            Site = e.Site == ExecutionSite.Gpu ? "gpu" : "cpu",
            DevicePromoted = e.DevicePromoted,
            DeviceBlocks = e.DeviceBlocks,
            DeviceReason = e.DeviceReason,
            Stats = stats,
        };
        foreach (Catalog.IndexStatus s in e.Indexes)
        {
            wire.Indexes.Add(ToWire(s));
        }

        foreach (EngineExplain.HeadExplain h in e.Heads)
        {
            wire.Heads.Add(ToWire(h));
        }

        return wire;
    }

    private static Wire.HeadExplain ToWire(EngineExplain.HeadExplain h)
    {
        var wire = new Wire.HeadExplain
        {
            KvHead = h.KvHead,
            Plan = h.Plan,
            Choice = ToWire(h.Choice),
            EstimatedRows = h.Estimated.Rows,
            EstimatedBytes = h.Estimated.Bytes,
            Scanned = h.Scanned,
            Attended = h.Attended,
            Sampled = h.Sampled,
            TokensScored = h.Actual.TokensScored,
            TokensAttended = h.Actual.TokensAttended,
            BytesRead = h.Actual.BytesRead,
            ExactUs = h.ExactMicros,
            ChosenUs = h.ChosenMicros,
            MassExact = h.MassExact,
            ErrorBound = h.ErrorBound,
            MaxPredictedError = Finite(h.MaxPredictedError),
        };
        foreach (EngineExplain.Alternative a in h.Alternatives)
        {
            wire.Alternatives.Add(new Wire.Alternative
            {
                Plan = a.Plan,
                Kind = (Wire.PlanKind)(int)a.Kind,
                LostBecause = ToWire(a.LostBecause),
                EstimatedRows = a.Estimated?.Rows ?? -1,
                EstimatedBytes = a.Estimated?.Bytes ?? -1,
                EstimatedUs = Finite(a.EstimatedMicros),
            });
        }

        return wire;
    }

    private static Wire.IndexStatus ToWire(Catalog.IndexStatus s) => new()
    {
        Spec = s.Spec,
        State = s.State switch
        {
            Catalog.IndexState.Absent => Wire.IndexState.Absent,
            Catalog.IndexState.Building => Wire.IndexState.Building,
            Catalog.IndexState.Ready => Wire.IndexState.Ready,
            Catalog.IndexState.Failed => Wire.IndexState.Failed,
            _ => Wire.IndexState.Unspecified,
        },
        LayerTokens = s.LayerTokens,
        IndexedTokens = s.IndexedTokens,
        BaseTokens = s.BaseTokens,
        SuffixTokens = s.SuffixTokens,
        Stale = s.Stale,
        Error = s.Error ?? "",
        Problem = s.Problem is null ? "" : ExplainText.Render(s.Problem),
    };

    private static Wire.PlanDecision ToWire(EngineExplain.PlanDecision d) => d switch
    {
        EngineExplain.PlanDecision.Requested => Wire.PlanDecision.Requested,
        EngineExplain.PlanDecision.AutoExact => Wire.PlanDecision.AutoExact,
        EngineExplain.PlanDecision.IndexNotReady => Wire.PlanDecision.IndexNotReady,
        EngineExplain.PlanDecision.IndexFailed => Wire.PlanDecision.IndexFailed,
        EngineExplain.PlanDecision.NoCatalog => Wire.PlanDecision.NoCatalog,
        EngineExplain.PlanDecision.AutoSampled => Wire.PlanDecision.AutoSampled,
        EngineExplain.PlanDecision.AutoExactCheaper => Wire.PlanDecision.AutoExactCheaper,
        _ => Wire.PlanDecision.Unspecified,
    };

    private static Wire.HeadChoice ToWire(EngineExplain.HeadChoice c) => c switch
    {
        EngineExplain.HeadChoice.Planned => Wire.HeadChoice.Planned,
        EngineExplain.HeadChoice.Sampled => Wire.HeadChoice.Sampled,
        EngineExplain.HeadChoice.HeavyOnly => Wire.HeadChoice.HeavyOnly,
        EngineExplain.HeadChoice.DiffuseAfterPilot => Wire.HeadChoice.DiffuseAfterPilot,
        EngineExplain.HeadChoice.ExactBefore => Wire.HeadChoice.ExactBefore,
        EngineExplain.HeadChoice.ExactCheaper => Wire.HeadChoice.ExactCheaper,
        EngineExplain.HeadChoice.LatencyCapped => Wire.HeadChoice.LatencyCapped,
        _ => Wire.HeadChoice.Unspecified,
    };

    private static Wire.LostBecause ToWire(EngineExplain.LostBecause l) => l switch
    {
        EngineExplain.LostBecause.Costlier => Wire.LostBecause.Costlier,
        EngineExplain.LostBecause.IndexNotReady => Wire.LostBecause.IndexNotReady,
        EngineExplain.LostBecause.IndexFailed => Wire.LostBecause.IndexFailed,
        EngineExplain.LostBecause.NoCatalog => Wire.LostBecause.NoCatalog,
        EngineExplain.LostBecause.NoQualityGuarantee => Wire.LostBecause.NoQualityGuarantee,
        EngineExplain.LostBecause.NeededExactBefore => Wire.LostBecause.NeededExactBefore,
        EngineExplain.LostBecause.OverLatencyTarget => Wire.LostBecause.OverLatencyTarget,
        _ => Wire.LostBecause.Unspecified,
    };

    /// <summary>A figure the wire can carry: −1 for NaN or infinity (no estimate, unbounded).</summary>
    private static double Finite(double x) => double.IsFinite(x) ? x : -1;

    /// <summary>The wire form of a pin tier.</summary>
    public static Protocol.V1.PinTier ToWire(Store.PinTier tier) => tier switch
    {
        Store.PinTier.Gpu => Protocol.V1.PinTier.Gpu,
        Store.PinTier.Disk => Protocol.V1.PinTier.Disk,
        _ => Protocol.V1.PinTier.Cpu,
    };

    /// <summary>A request's pin tier (UNSPECIFIED = CPU); INVALID_ARGUMENT for a value this server does not know.</summary>
    public static Store.PinTier ToPinTier(Protocol.V1.PinTier tier) => tier switch
    {
        Protocol.V1.PinTier.Unspecified or Protocol.V1.PinTier.Cpu => Store.PinTier.Cpu,
        Protocol.V1.PinTier.Gpu => Store.PinTier.Gpu,
        Protocol.V1.PinTier.Disk => Store.PinTier.Disk,
        _ => throw KvDbException.Invalid($"pin_tier {(int)tier} is not one of PIN_TIER_CPU, PIN_TIER_GPU, PIN_TIER_DISK"),
    };

    /// <summary>The policy's name in stats and metric labels: "lru" or "tinylfu".</summary>
    public static string PolicyName(Store.EvictionPolicy policy) => policy == Store.EvictionPolicy.TinyLfu ? "tinylfu" : "lru";

    /// <summary>hits / (hits + misses), 0 before any read.</summary>
    public static double HitRatio(long hits, long misses) => hits + misses == 0 ? 0 : (double)hits / (hits + misses);
}

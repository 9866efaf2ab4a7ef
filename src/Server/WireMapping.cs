using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.Store;

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
        var ctx = new Context { Id = c.Id, Model = c.Model, Namespace = c.Namespace, NumTokens = c.NumTokens, Bytes = c.Bytes, CreatedUnixMs = c.CreatedUnixMs, ExpiresAtUnixMs = c.ExpiresAtUnixMs };
        ctx.LayerTokens.Add(c.LayerTokens);
        return ctx;
    }

    /// <summary>The request's plan; a tolerance field left 0 takes <paramref name="defaults"/>' value.</summary>
    public static PlanRequest ToPlan(Plan? p, QualityContract defaults)
    {
        if (p is null)
        {
            return PlanRequest.Auto;
        }

        if (p.Budget < 0 || !float.IsFinite(p.Beta) || p.Beta < 0)
        {
            throw KvDbException.Invalid("plan.budget and plan.beta must be ≥ 0 (0 = the plan's default)");
        }

        QualityContract? quality = p.Epsilon == 0 && p.Delta == 0 && p.MaxLatencyUs == 0
            ? null
            : QualityContract.FromWire(p.Epsilon, p.Delta, p.MaxLatencyUs, defaults);
        return new PlanRequest((QueryEngine.PlanKind)(int)p.Kind, p.Budget, p.Beta, quality);
    }
}

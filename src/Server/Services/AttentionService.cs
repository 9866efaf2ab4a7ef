using Grpc.Core;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Attention: partial attention with LSE over a stored context layer.</summary>
public sealed class AttentionService : Attention.AttentionBase
{
    private readonly AttentionExecutor _executor;

    /// <summary>Creates the service.</summary>
    public AttentionService(AttentionExecutor executor)
    {
        _executor = executor;
    }

    /// <inheritdoc />
    public override Task<AttendResponse> Attend(AttendRequest request, ServerCallContext context) =>
        Task.FromResult(Answer(request));

    /// <inheritdoc />
    public override async Task AttendStream(IAsyncStreamReader<AttendRequest> requestStream, IServerStreamWriter<AttendResponse> responseStream, ServerCallContext context)
    {
        await foreach (AttendRequest request in requestStream.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
        {
            await responseStream.WriteAsync(Answer(request), context.CancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public override Task<ExplainResponse> Explain(AttendRequest request, ServerCallContext context)
    {
        AttentionResult result = Run(request, returnSelection: false, out _, out _, out _, explained: true);
        return Task.FromResult(WireMapping.ToWire(result.Stats.Explain, WireMapping.ToWire(result.Stats)));
    }

    private AttendResponse Answer(AttendRequest request)
    {
        AttentionResult result = Run(request, request.ReturnSelection, out int q, out int heads, out int dim);
        var response = new AttendResponse
        {
            Output = TensorCodec.FromSingles(result.Output, q, heads, dim),
            Lse = TensorCodec.FromSingles(result.Lse, q, heads),
            Stats = WireMapping.ToWire(result.Stats),
        };
        if (result.Selected is not null)
        {
            response.Selected.Add(result.Selected);
            response.SelectionCounts.Add(result.SelectionCounts!);
        }

        return response;
    }

    private AttentionResult Run(AttendRequest request, bool returnSelection, out int q, out int heads, out int dim, bool explained = false)
    {
        // The wire form is checked here; the shape against the model, the layer and the context are checked by the
        // executor where it pins the layer: the request visits the store once.
        (q, heads, dim) = TensorCodec.CheckQueryShape("queries", request.Queries);
        float[] queries = TensorCodec.ToFiniteSingles("queries", request.Queries!);
        var query = new AttentionQuery(
            request.ContextId,
            request.Layer,
            queries,
            q,
            request.Exclude?.Start ?? 0,
            request.Exclude?.End ?? 0,
            WireMapping.ToPlan(request.Plan, _executor.DefaultQuality),
            returnSelection)
        {
            Explained = explained,
        };
        return _executor.Attend(query);
    }
}

using Grpc.Core;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Attention: partial attention with LSE over a stored context layer.</summary>
public sealed class AttentionService : Attention.AttentionBase
{
    private readonly IKvStore _store;
    private readonly AttentionExecutor _executor;

    /// <summary>Creates the service.</summary>
    public AttentionService(IKvStore store, AttentionExecutor executor)
    {
        _store = store;
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

    private AttendResponse Answer(AttendRequest request)
    {
        ModelSchema model = _store.GetModel(_store.GetContext(request.ContextId).Model);
        model.CheckLayer(request.Layer);
        int q = TensorCodec.CheckShape("queries", request.Queries, null, model.NumQueryHeads, model.HeadDim);
        float[] queries = TensorCodec.ToFiniteSingles("queries", request.Queries);
        var query = new AttentionQuery(
            request.ContextId,
            request.Layer,
            queries,
            q,
            request.Exclude?.Start ?? 0,
            request.Exclude?.End ?? 0,
            WireMapping.ToPlan(request.Plan),
            request.ReturnSelection);
        AttentionResult result = _executor.Attend(query);
        var response = new AttendResponse
        {
            Output = TensorCodec.FromSingles(result.Output, q, model.NumQueryHeads, model.HeadDim),
            Lse = TensorCodec.FromSingles(result.Lse, q, model.NumQueryHeads),
            Stats = new AttendStats
            {
                Plan = result.Stats.Plan,
                TokensScored = result.Stats.TokensScored,
                TokensAttended = result.Stats.TokensAttended,
                BytesRead = result.Stats.BytesRead,
                ServerMicros = result.Stats.ServerMicros,
                Explain = ExplainText.Render(result.Stats.Explain),
            },
        };
        if (result.Selected is not null)
        {
            response.Selected.Add(result.Selected);
            response.SelectionCounts.Add(result.SelectionCounts!);
        }

        return response;
    }
}

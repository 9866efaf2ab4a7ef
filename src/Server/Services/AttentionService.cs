using Grpc.Core;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;

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

    private AttendResponse Answer(AttendRequest request)
    {
        // The wire form is checked here; the shape against the model, the layer and the context are checked by the
        // executor where it pins the layer: the request visits the store once.
        (int q, int heads, int dim) = TensorCodec.CheckQueryShape("queries", request.Queries);
        float[] queries = TensorCodec.ToFiniteSingles("queries", request.Queries!);
        var query = new AttentionQuery(
            request.ContextId,
            request.Layer,
            queries,
            q,
            request.Exclude?.Start ?? 0,
            request.Exclude?.End ?? 0,
            WireMapping.ToPlan(request.Plan, _executor.DefaultQuality),
            request.ReturnSelection);
        AttentionResult result = _executor.Attend(query);
        var response = new AttendResponse
        {
            Output = TensorCodec.FromSingles(result.Output, q, heads, dim),
            Lse = TensorCodec.FromSingles(result.Lse, q, heads),
            Stats = new AttendStats
            {
                Plan = result.Stats.Plan,
                TokensScored = result.Stats.TokensScored,
                TokensAttended = result.Stats.TokensAttended,
                BytesRead = result.Stats.BytesRead,
                ServerMicros = result.Stats.ServerMicros,
                Explain = ExplainText.Render(result.Stats.Explain),
                Epsilon = result.Stats.Contract?.Epsilon ?? 0,
                Delta = result.Stats.Contract?.Delta ?? 0,
            },
        };
        if (result.Stats.Quality is { } quality)
        {
            foreach (QueryEngine.HeadQuality h in quality)
            {
                response.Stats.HeadQuality.Add(new Protocol.V1.HeadQuality
                {
                    Query = h.Query,
                    QueryHead = h.QueryHead,
                    KvHead = h.KvHead,
                    Plan = h.Plan,
                    MassExact = h.MassExact,
                    ErrorBound = h.ErrorBound,
                    PredictedError = double.IsFinite(h.PredictedError) ? h.PredictedError : -1,
                    TokensExact = h.TokensExact,
                    TokensSampled = h.TokensSampled,
                    TokensResidual = h.TokensResidual,
                });
            }
        }
        if (result.Selected is not null)
        {
            response.Selected.Add(result.Selected);
            response.SelectionCounts.Add(result.SelectionCounts!);
        }

        return response;
    }
}

using System.Threading.Channels;
using Grpc.Core;
using KvDb.Kernels;
using KvDb.Protocol;
using KvDb.Protocol.V1;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.Server.Admission;
using KvDb.Server.Observability;
using KvDb.Server.Security;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Attention: partial attention with LSE over a stored context layer.</summary>
public sealed class AttentionService : Attention.AttentionBase
{
    private readonly AttentionExecutor _executor;
    private readonly AdmissionGate _admission;
    private readonly KvDbMetrics? _metrics;

    /// <summary>
    /// Creates the service; every request runs in a slot of <paramref name="admission"/>'s attend gate, answered requests
    /// are counted in <paramref name="metrics"/> when given.
    /// </summary>
    public AttentionService(AttentionExecutor executor, AdmissionControl admission, KvDbMetrics? metrics = null)
    {
        _executor = executor;
        _admission = admission.Attend;
        _metrics = metrics;
    }

    /// <inheritdoc />
    public override async Task<AttendResponse> Attend(AttendRequest request, ServerCallContext context)
    {
        using AdmissionGate.Slot slot = await _admission.EnterAsync(context.CancellationToken).ConfigureAwait(false);
        return Answer(request, AuthInterceptor.PrincipalOf(context), StopSignal.For(context.Deadline, context.CancellationToken));
    }

    /// <summary>
    /// Requests of one <c>AttendStream</c> answered at the same time, at most: an engine streams many layers' (or many
    /// sequences') queries, and answering the next while the previous is still running or being written keeps the cores
    /// busy that one request's heads leave idle. Responses still go out in request order.
    /// </summary>
    public const int StreamPipelineDepth = 4;

    /// <inheritdoc />
    /// <remarks>
    /// Pipelined: each request starts as soon as it arrives (up to <see cref="StreamPipelineDepth"/> ahead of the one
    /// being written), and responses are written in request order. The first request that fails ends the stream with its
    /// status after every earlier response was written; later answers are dropped.
    /// </remarks>
    public override async Task AttendStream(IAsyncStreamReader<AttendRequest> requestStream, IServerStreamWriter<AttendResponse> responseStream, ServerCallContext context)
    {
        Principal principal = AuthInterceptor.PrincipalOf(context);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        var answers = Channel.CreateBounded<Task<AttendResponse>>(new BoundedChannelOptions(StreamPipelineDepth) { SingleReader = true, SingleWriter = true });
        Task writer = WriteInOrder(answers.Reader, responseStream, stop);
        try
        {
            await foreach (AttendRequest request in requestStream.ReadAllAsync(stop.Token).ConfigureAwait(false))
            {
                // The slot is taken before the message runs, so a stream waits (reading no further) while the server
                // is busy; a refusal ends the stream after every earlier answer, like any failed message.
                AdmissionGate.Slot slot;
                try
                {
                    slot = await _admission.EnterAsync(stop.Token).ConfigureAwait(false);
                }
                catch (RpcException refused)
                {
                    await answers.Writer.WriteAsync(Task.FromException<AttendResponse>(refused), stop.Token).ConfigureAwait(false);
                    break;
                }

                // The signal is made here, not in the task: once the stream ends, `stop` is disposed, and reading its token
                // in a task that starts later threw before the slot's `using`, so the slot was never given back.
                StopSignal signal = StopSignal.For(context.Deadline, stop.Token);
                await answers.Writer.WriteAsync(Task.Run(() => AnswerIn(slot, request, principal, signal), CancellationToken.None), stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            // The writer stopped on a failed answer: its exception, awaited below, is the stream's status.
        }
        finally
        {
            answers.Writer.TryComplete();
        }

        await writer.ConfigureAwait(false);
    }

    private static async Task WriteInOrder(ChannelReader<Task<AttendResponse>> answers, IServerStreamWriter<AttendResponse> responseStream, CancellationTokenSource stop)
    {
        try
        {
            await foreach (Task<AttendResponse> answer in answers.ReadAllAsync(stop.Token).ConfigureAwait(false))
            {
                await responseStream.WriteAsync(await answer.ConfigureAwait(false), stop.Token).ConfigureAwait(false);
            }
        }
        catch
        {
            await stop.CancelAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    public override async Task<ExplainResponse> Explain(AttendRequest request, ServerCallContext context)
    {
        using AdmissionGate.Slot slot = await _admission.EnterAsync(context.CancellationToken).ConfigureAwait(false);
        AttentionResult result = Run(request, AuthInterceptor.PrincipalOf(context), returnSelection: false, out _, out _, out _, explained: true, StopSignal.For(context.Deadline, context.CancellationToken));
        return WireMapping.ToWire(result.Stats.Explain, WireMapping.ToWire(result.Stats));
    }

    private AttendResponse AnswerIn(AdmissionGate.Slot slot, AttendRequest request, Principal principal, StopSignal stop)
    {
        using (slot)
        {
            return Answer(request, principal, stop);
        }
    }

    private AttendResponse Answer(AttendRequest request, Principal principal, StopSignal stop)
    {
        AttentionResult result = Run(request, principal, request.ReturnSelection, out int q, out int heads, out int dim, stop: stop);
        _metrics?.Attend(result.Stats);
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

    private AttentionResult Run(AttendRequest request, Principal principal, bool returnSelection, out int q, out int heads, out int dim, bool explained = false, StopSignal stop = default)
    {
        // The wire form is checked here; the shape against the model, the layer and the context are checked by the
        // executor where it pins the layer: the request visits the store once.
        (q, heads, dim) = TensorCodec.CheckQueryShape("queries", request.Queries);
        float[] queries = TensorCodec.ToFiniteSingles("queries", request.Queries!);
        var query = new AttentionQuery(
            TenantScope.ContextId(principal, request.ContextId),
            request.Layer,
            queries,
            q,
            request.Exclude?.Start ?? 0,
            request.Exclude?.End ?? 0,
            WireMapping.ToPlan(request.Plan, _executor.DefaultQuality),
            returnSelection)
        {
            Explained = explained,
            Cancellation = stop,
        };
        return _executor.Attend(query);
    }
}

using KvDb.QueryEngine.Planning;

namespace KvDb.QueryEngine.Execution;

/// <summary>
/// AUTO's statistics of a context as <see cref="AttentionExecutor.DescribeHeads"/> reports them: the model's layers and
/// KV heads (the full grid) and the layers and heads that have statistics (<see cref="ContextHeadStatistics"/>).
/// </summary>
public sealed record ContextHeadReport(int NumLayers, int NumKvHeads, ContextHeadStatistics Statistics);

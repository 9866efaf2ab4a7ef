using KvDb.Kernels;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// A KV head's answer computed during selection (AUTO computes the heavy part to size its sample): the partial
/// output [group rows, head_dim] and log-sum-exp [group rows] of every query row of the group, what each row rests
/// on, and what computing it read.
/// </summary>
public sealed record GroupPartial(float[] Output, float[] Lse, HeadQuality[] Quality, AttentionCounters Counters);

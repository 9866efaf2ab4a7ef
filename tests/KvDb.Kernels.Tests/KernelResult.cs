namespace KvDb.Kernels.Tests;

/// <summary>What one <see cref="ExactAttentionKernel.Run"/> call produced.</summary>
internal sealed record KernelResult(float[] Output, float[] Lse, AttentionCounters Counters);

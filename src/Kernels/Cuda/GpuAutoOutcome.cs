namespace KvDb.Kernels.Cuda;

/// <summary>
/// How a <see cref="GpuAutoAttention.Answer"/> went: answered exactly (after the sample could not meet the tolerance),
/// the sample per KV head of the accepted try, how many tries, and per query head the promised error bound and the
/// estimated share of the softmax mass held by the heavy part.
/// </summary>
public sealed record GpuAutoOutcome(bool Exact, int Sample, int Tries, float[] Bounds, float[] HeavyMass);

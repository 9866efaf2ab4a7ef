using KvDb.QueryEngine.Explain;

namespace KvDb.QueryEngine.Execution;

/// <summary>Where the attend phase ran: on the GPU tier (with the blocks it had to promote), or on the CPU and why not on the GPU.</summary>
public readonly record struct DeviceOutcome(ExecutionSite Site, int Promoted, int Blocks, string Reason)
{
    /// <summary>On the CPU, for <paramref name="reason"/> ("" when the GPU tier had no reason to refuse, e.g. a CUDA call failed or nobody asked).</summary>
    public static DeviceOutcome OnCpu(string reason) => new(ExecutionSite.Cpu, 0, 0, reason);
}

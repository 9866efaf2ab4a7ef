using KvDb.QueryEngine.Explain;

namespace KvDb.QueryEngine.Execution;

/// <summary>Where the attend phase ran: on the GPU tier (with the blocks it had to promote), or on the CPU and why not on the GPU.</summary>
public readonly record struct DeviceOutcome(ExecutionSite Site, int Promoted, int Blocks, string Reason);

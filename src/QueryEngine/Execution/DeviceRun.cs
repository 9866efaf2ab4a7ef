namespace KvDb.QueryEngine.Execution;

/// <summary>
/// Where a plan's attention ran: on the device (<see cref="OnDevice"/>, with the blocks the snapshot promoted
/// of those it holds) or not, with the reason the layer was not on the device ("" when there is none to tell).
/// </summary>
public readonly record struct DeviceRun(bool OnDevice, int Promoted, int Blocks, string Reason)
{
    /// <summary>No device run, for <paramref name="reason"/>.</summary>
    public static DeviceRun NotRun(string reason) => new(false, 0, 0, reason);
}

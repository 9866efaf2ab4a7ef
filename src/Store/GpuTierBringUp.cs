using KvDb.Kernels.Cuda;

namespace KvDb.Store;

/// <summary>
/// Brings up the GPU tier that <see cref="StoreOptions.GpuBudgetBytes"/> asks for, or says why it stays off:
/// a store without CUDA (no library, driver or GPU) or with a device that does not open runs on the CPU.
/// </summary>
internal static class GpuTierBringUp
{
    /// <summary>The status of a store that was given no GPU budget.</summary>
    public const string NoBudgetStatus = "gpu tier off: no GPU budget (--gpu-budget BYTES)";

    /// <summary>
    /// The tier, or null when it is off. <paramref name="status"/> is "gpu tier: …" when on, "gpu tier off: …" with
    /// the reason otherwise; a budget that was asked for but could not be honoured deserves a warning to the operator.
    /// </summary>
    public static CudaDeviceTier? Open(StoreOptions options, out string status)
    {
        if (options.GpuBudgetBytes <= 0)
        {
            status = NoBudgetStatus;
            return null;
        }

        if (!CudaRuntime.IsAvailable)
        {
            status = $"gpu tier off: a GPU budget of {options.GpuBudgetBytes} bytes was asked for but the CUDA backend is unavailable ({CudaRuntime.UnavailableReason}); attention runs on the CPU";
            return null;
        }

        CudaDeviceTier? tier = null;
        try
        {
            tier = new CudaDeviceTier(options.GpuBudgetBytes, options.GpuDevice);
            status = $"gpu tier: up to {options.GpuBudgetBytes} bytes on device {options.GpuDevice} ({CudaRuntime.DeviceName(options.GpuDevice)})";
            return tier;
        }
        catch (Exception e) when (e is CudaException or InvalidOperationException or ArgumentException)
        {
            tier?.Dispose();
            status = $"gpu tier off: opening CUDA device {options.GpuDevice} failed ({e.Message}); attention runs on the CPU";
            return null;
        }
    }
}

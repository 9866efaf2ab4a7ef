namespace KvDb.Kernels.Cuda;

/// <summary>A kvdb CUDA call failed: <see cref="Status"/> is its return code (a cudaError_t when positive).</summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for a failed call.</summary>
    public CudaException(int status, string message)
        : base(message)
    {
        Status = status;
    }

    /// <summary>The status the native call returned.</summary>
    public int Status { get; }
}

using Microsoft.Win32.SafeHandles;

namespace KvDb.Index;

/// <summary>Owns one native faiss index of the shim; released exactly once, even if the owner is never disposed.</summary>
internal sealed class FaissHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public FaissHandle()
        : base(ownsHandle: true)
    {
    }

    public FaissHandle(IntPtr handle)
        : base(ownsHandle: true)
    {
        SetHandle(handle);
    }

    protected override bool ReleaseHandle()
    {
        FaissNativeMethods.Free(handle);
        return true;
    }
}

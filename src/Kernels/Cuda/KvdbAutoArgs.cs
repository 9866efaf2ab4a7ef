using System.Runtime.InteropServices;

namespace KvDb.Kernels.Cuda;

/// <summary>kvdb_centroid_layout of kvdb_cuda.h: ten device pointers and an int64 (88 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvdbCentroidLayout
{
    public nint Coarse;
    public nint CoarseMembers;
    public nint FineStart;
    public nint Fine;
    public nint MemberStart;
    public nint Members;
    public nint Outliers;
    public nint CoarseStart;
    public nint FineHeadStart;
    public nint OutlierStart;
    public long IndexedTokens;
}

/// <summary>kvdb_auto_select_args of kvdb_cuda.h: the index layout, ten pointers, a uint64, four int64 and ten int32 (248 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvdbAutoSelectArgs
{
    public KvdbCentroidLayout Index;
    public nint Queries;
    public nint HeavyPositions;
    public nint HeavyOffsets;
    public nint SamplePositions;
    public nint SampleOffsets;
    public nint Residual;
    public nint Flags;
    public nint Bitmap;
    public nint Counts;
    public nint Status;
    public ulong Seed;
    public long NumTokens;
    public long ExcludeStart;
    public long ExcludeEnd;
    public long HeavyCapacity;
    public int NumQueries;
    public int NumQueryHeads;
    public int NumKvHeads;
    public int HeadDim;
    public int PerRow;
    public int ProbeMembers;
    public int SampleSize;
    public int Sinks;
    public int BitmapWords;
    public int Reserved;
}

/// <summary>kvdb_auto_merge_args of kvdb_cuda.h: eight pointers, an int32 and a float (72 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvdbAutoMergeArgs
{
    public nint HeavyOutput;
    public nint HeavyLse;
    public nint SampleOutput;
    public nint SampleLse;
    public nint SamplePositions;
    public nint Residual;
    public nint Bound;
    public nint HeavyMass;
    public int SampleSize;
    public float Factor;
}

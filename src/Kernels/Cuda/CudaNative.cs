using System.Runtime.InteropServices;

namespace KvDb.Kernels.Cuda;

/// <summary>
/// The C ABI of libkvdbcuda.so (src/Kernels/native/cuda/kvdb_cuda.h) as unmanaged function pointers
/// resolved from one loaded library handle. Resolving by hand (instead of DllImport) keeps the probe
/// free of exceptions when the library is missing, needs no assembly-wide import resolver, and is
/// trimming-safe. Every pointer here is non-null once <see cref="TryLoad"/> returned an instance, except the
/// optional AUTO exports (<see cref="AutoSelect"/>, <see cref="AutoMerge"/>).
/// </summary>
internal sealed unsafe class CudaNative
{
    /// <summary>ABI version this binding was written for (KVDB_CUDA_ABI_VERSION).</summary>
    public const int AbiVersion = 2;

    public const int CopyHostToDevice = 1;
    public const int CopyDeviceToHost = 2;
    public const int CopyDeviceToDevice = 3;

    public readonly delegate* unmanaged<int> GetAbiVersion;
    public readonly delegate* unmanaged<int, byte*> ErrorString;
    public readonly delegate* unmanaged<int*, int> DeviceCount;
    public readonly delegate* unmanaged<int, byte*, int, int> DeviceName;
    public readonly delegate* unmanaged<int, ulong*, ulong*, int> DeviceMemory;
    public readonly delegate* unmanaged<int, nint*, ulong, int> Malloc;
    public readonly delegate* unmanaged<nint, int> Free;
    public readonly delegate* unmanaged<nint, nint, ulong, int, int> Memcpy;
    public readonly delegate* unmanaged<nint, int, ulong, int> Memset;
    public readonly delegate* unmanaged<int> Synchronize;
    public readonly delegate* unmanaged<int, nint*, int> CtxCreate;
    public readonly delegate* unmanaged<nint, int> CtxDestroy;
    public readonly delegate* unmanaged<nint, nint, int> CtxSetStream;
    public readonly delegate* unmanaged<nint, int> CtxSynchronize;
    public readonly delegate* unmanaged<nint, int*, int> CtxMultiprocessors;
    public readonly delegate* unmanaged<nint, KvdbAttnArgs*, int> Attention;
    public readonly delegate* unmanaged<nint, KvdbAttnBatchArgs*, int> AttentionBatch;
    public readonly delegate* unmanaged<nint, KvdbAttnArgs*, nint, long, int> Score;
    public readonly delegate* unmanaged<nint, nint, int, int, long, int, nint, nint, int> TopK;
    public readonly delegate* unmanaged<nint, nint, long, int, ulong, float, int> FillRandom;
    public readonly delegate* unmanaged<nint, nint, ulong, int> ReadBytes;
    public readonly delegate* unmanaged<nint, int> FlushL2;
    public readonly delegate* unmanaged<int, int, int> SetOption;
    public readonly delegate* unmanaged<nint, KvdbAutoSelectArgs*, int> AutoSelect;
    public readonly delegate* unmanaged<nint, KvdbAttnArgs*, KvdbAutoMergeArgs*, int> AutoMerge;
    public readonly delegate* unmanaged<nint*, int> EventCreate;
    public readonly delegate* unmanaged<nint, int> EventDestroy;
    public readonly delegate* unmanaged<nint, nint, int> EventRecord;
    public readonly delegate* unmanaged<nint, nint, float*, int> EventElapsedMs;

    private CudaNative(nint h)
    {
        GetAbiVersion = (delegate* unmanaged<int>)Export(h, "kvdb_cuda_abi_version");
        ErrorString = (delegate* unmanaged<int, byte*>)Export(h, "kvdb_cuda_error_string");
        DeviceCount = (delegate* unmanaged<int*, int>)Export(h, "kvdb_cuda_device_count");
        DeviceName = (delegate* unmanaged<int, byte*, int, int>)Export(h, "kvdb_cuda_device_name");
        DeviceMemory = (delegate* unmanaged<int, ulong*, ulong*, int>)Export(h, "kvdb_cuda_device_memory");
        Malloc = (delegate* unmanaged<int, nint*, ulong, int>)Export(h, "kvdb_cuda_malloc");
        Free = (delegate* unmanaged<nint, int>)Export(h, "kvdb_cuda_free");
        Memcpy = (delegate* unmanaged<nint, nint, ulong, int, int>)Export(h, "kvdb_cuda_memcpy");
        Memset = (delegate* unmanaged<nint, int, ulong, int>)Export(h, "kvdb_cuda_memset");
        Synchronize = (delegate* unmanaged<int>)Export(h, "kvdb_cuda_synchronize");
        CtxCreate = (delegate* unmanaged<int, nint*, int>)Export(h, "kvdb_ctx_create");
        CtxDestroy = (delegate* unmanaged<nint, int>)Export(h, "kvdb_ctx_destroy");
        CtxSetStream = (delegate* unmanaged<nint, nint, int>)Export(h, "kvdb_ctx_set_stream");
        CtxSynchronize = (delegate* unmanaged<nint, int>)Export(h, "kvdb_ctx_synchronize");
        CtxMultiprocessors = (delegate* unmanaged<nint, int*, int>)Export(h, "kvdb_ctx_multiprocessors");
        Attention = (delegate* unmanaged<nint, KvdbAttnArgs*, int>)Export(h, "kvdb_attention");
        AttentionBatch = (delegate* unmanaged<nint, KvdbAttnBatchArgs*, int>)Export(h, "kvdb_attention_batch");
        Score = (delegate* unmanaged<nint, KvdbAttnArgs*, nint, long, int>)Export(h, "kvdb_score");
        TopK = (delegate* unmanaged<nint, nint, int, int, long, int, nint, nint, int>)Export(h, "kvdb_topk");
        FillRandom = (delegate* unmanaged<nint, nint, long, int, ulong, float, int>)Export(h, "kvdb_fill_random");
        ReadBytes = (delegate* unmanaged<nint, nint, ulong, int>)Export(h, "kvdb_read_bytes");
        FlushL2 = (delegate* unmanaged<nint, int>)Export(h, "kvdb_flush_l2");
        SetOption = (delegate* unmanaged<int, int, int>)Export(h, "kvdb_set_option");
        // Optional (a library built without kvdb_auto.cu lacks them): null then, and AUTO on the device stays off.
        AutoSelect = (delegate* unmanaged<nint, KvdbAutoSelectArgs*, int>)OptionalExport(h, "kvdb_auto_select");
        AutoMerge = (delegate* unmanaged<nint, KvdbAttnArgs*, KvdbAutoMergeArgs*, int>)OptionalExport(h, "kvdb_auto_merge");
        EventCreate = (delegate* unmanaged<nint*, int>)Export(h, "kvdb_event_create");
        EventDestroy = (delegate* unmanaged<nint, int>)Export(h, "kvdb_event_destroy");
        EventRecord = (delegate* unmanaged<nint, nint, int>)Export(h, "kvdb_event_record");
        EventElapsedMs = (delegate* unmanaged<nint, nint, float*, int>)Export(h, "kvdb_event_elapsed_ms");
    }

    /// <summary>Path the library was loaded from.</summary>
    public string LibraryPath { get; private init; } = "";

    /// <summary>
    /// Loads the first candidate that exists and exports the whole ABI: $KVDB_CUDA_LIBRARY, then
    /// libkvdbcuda.so next to the application, then the dynamic linker's search path.
    /// Returns null with a reason instead of throwing.
    /// </summary>
    public static CudaNative? TryLoad(out string reason)
    {
        var candidates = new List<string>();
        string? env = Environment.GetEnvironmentVariable("KVDB_CUDA_LIBRARY");
        if (!string.IsNullOrEmpty(env))
        {
            candidates.Add(env);
        }

        candidates.Add(Path.Combine(AppContext.BaseDirectory, "libkvdbcuda.so"));
        candidates.Add("libkvdbcuda.so");
        reason = "libkvdbcuda.so not found (set KVDB_CUDA_LIBRARY or build it with src/Kernels/native/cuda/build.sh)";
        foreach (string path in candidates)
        {
            if (!NativeLibrary.TryLoad(path, out nint handle))
            {
                continue;
            }

            try
            {
                var native = new CudaNative(handle) { LibraryPath = path };
                int abi = native.GetAbiVersion();
                if (abi != AbiVersion)
                {
                    reason = $"{path} has ABI version {abi}, this build expects {AbiVersion}";
                    NativeLibrary.Free(handle);
                    continue;
                }

                return native;
            }
            catch (EntryPointNotFoundException e)
            {
                reason = $"{path} lacks an export: {e.Message}";
                NativeLibrary.Free(handle);
            }
        }

        return null;
    }

    /// <summary>The message for a status code returned by any kvdb_* function.</summary>
    public string Message(int status) => Marshal.PtrToStringUTF8((nint)ErrorString(status)) ?? $"status {status}";

    private static nint Export(nint handle, string name) => NativeLibrary.GetExport(handle, name);

    private static nint OptionalExport(nint handle, string name) => NativeLibrary.TryGetExport(handle, name, out nint address) ? address : 0;
}

/// <summary>kvdb_attn_args of kvdb_cuda.h: eight pointers, four int64, nine int32 and a float (136 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvdbAttnArgs
{
    public nint Keys;
    public nint Values;
    public nint BlockTable;
    public nint Positions;
    public nint Offsets;
    public nint Queries;
    public nint Output;
    public nint Lse;
    public long NumTokens;
    public long KvCapacity;
    public long ExcludeStart;
    public long ExcludeEnd;
    public int NumQueryHeads;
    public int NumKvHeads;
    public int HeadDim;
    public int DType;
    public int Layout;
    public int BlockCapacity;
    public int NumQueries;
    public int MaxPositions;
    public float Scale;
    public int NumSplits;
}

/// <summary>kvdb_attn_request of kvdb_cuda.h: eight pointers and four int64 (96 bytes), one per request of a batched launch.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvdbAttnRequest
{
    public nint Keys;
    public nint Values;
    public nint BlockTable;
    public nint Positions;
    public nint Offsets;
    public nint Queries;
    public nint Output;
    public nint Lse;
    public long NumTokens;
    public long KvCapacity;
    public long ExcludeStart;
    public long ExcludeEnd;
}

/// <summary>kvdb_attn_batch_args of kvdb_cuda.h: a pointer, an int64, eleven int32 and a float (64 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KvdbAttnBatchArgs
{
    public nint Requests;
    public long MaxRows;
    public int Batch;
    public int Gathered;
    public int NumQueryHeads;
    public int NumKvHeads;
    public int HeadDim;
    public int DType;
    public int Layout;
    public int BlockCapacity;
    public int NumQueries;
    public float Scale;
    public int NumSplits;
    public int Reserved;
}

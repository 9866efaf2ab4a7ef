using System.Reflection;
using System.Runtime.InteropServices;

namespace KvDb.Index;

/// <summary>
/// P/Invoke surface of libkvfaiss.so (src/Index/native/faiss_shim.cpp). The library is optional: it is
/// looked up next to the assemblies, then at $KVDB_FAISS_LIBRARY, and <see cref="IsAvailable"/> says
/// whether either worked, so callers (tests, benchmarks) can skip instead of crashing.
/// </summary>
internal static class FaissNativeMethods
{
    private const string Library = "kvfaiss";

    private static readonly Lazy<bool> Loaded = new(TryLoad);

    static FaissNativeMethods()
    {
        NativeLibrary.SetDllImportResolver(typeof(FaissNativeMethods).Assembly, Resolve);
    }

    public static bool IsAvailable => Loaded.Value;

    [DllImport(Library, EntryPoint = "kvf_last_error")]
    public static extern IntPtr LastError();

    [DllImport(Library, EntryPoint = "kvf_set_threads")]
    public static extern void SetThreads(int threads);

    [DllImport(Library, EntryPoint = "kvf_create_hnsw")]
    public static extern int CreateHnsw(int dim, int m, int efConstruction, out IntPtr handle);

    [DllImport(Library, EntryPoint = "kvf_create_ivf")]
    public static extern int CreateIvf(int dim, int nlist, out IntPtr handle);

    [DllImport(Library, EntryPoint = "kvf_is_trained")]
    public static extern int IsTrained(FaissHandle handle);

    [DllImport(Library, EntryPoint = "kvf_train")]
    public static extern int Train(FaissHandle handle, long n, ref float x);

    [DllImport(Library, EntryPoint = "kvf_add")]
    public static extern int Add(FaissHandle handle, long n, ref float x);

    [DllImport(Library, EntryPoint = "kvf_count")]
    public static extern long Count(FaissHandle handle);

    [DllImport(Library, EntryPoint = "kvf_search")]
    public static extern int Search(FaissHandle handle, long n, ref float x, long k, int effort, ref float distances, ref long labels, out long distanceComputations);

    [DllImport(Library, EntryPoint = "kvf_serialize")]
    public static extern int Serialize(FaissHandle handle, out IntPtr data, out long length);

    [DllImport(Library, EntryPoint = "kvf_free_buffer")]
    public static extern void FreeBuffer(IntPtr data);

    [DllImport(Library, EntryPoint = "kvf_deserialize")]
    public static extern int Deserialize(ref byte data, long length, out IntPtr handle);

    [DllImport(Library, EntryPoint = "kvf_free")]
    public static extern void Free(IntPtr handle);

    /// <summary>Throws with the shim's message when <paramref name="status"/> is an error.</summary>
    public static void Check(int status, string what)
    {
        if (status != 0)
        {
            string message = Marshal.PtrToStringUTF8(LastError()) ?? "unknown error";
            throw new InvalidOperationException($"faiss {what} failed: {message}");
        }
    }

    private static bool TryLoad()
    {
        try
        {
            SetThreads(1);
            return true;
        }
        catch (DllNotFoundException)
        {
            return false;
        }
        catch (EntryPointNotFoundException)
        {
            return false;
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Library)
        {
            return IntPtr.Zero;
        }

        string local = Path.Combine(AppContext.BaseDirectory, "libkvfaiss.so");
        if (File.Exists(local) && NativeLibrary.TryLoad(local, out IntPtr handle))
        {
            return handle;
        }

        string? configured = Environment.GetEnvironmentVariable("KVDB_FAISS_LIBRARY");
        if (!string.IsNullOrEmpty(configured) && NativeLibrary.TryLoad(configured, out handle))
        {
            return handle;
        }

        return IntPtr.Zero;
    }
}

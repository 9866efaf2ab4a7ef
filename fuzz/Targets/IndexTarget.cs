using KvDb.Index;

namespace KvDb.Fuzz.Targets;

/// <summary>
/// One KV head's index stream (what <see cref="IKeyIndex.Save"/> writes, inside a .kix file) through
/// <see cref="IndexFactory.Load"/>: the header names the family, whose payload loader then runs. Bad input:
/// <see cref="InvalidDataException"/>, <see cref="EndOfStreamException"/>, <see cref="ArgumentException"/> (what
/// the index catalog catches around a load), and <see cref="DllNotFoundException"/> for a FAISS stream on a machine
/// without the native library (the FAISS blob itself is native code's to decode, out of this harness's reach).
/// </summary>
internal static class IndexTarget
{
    public const string Name = "index";

    public static void Run(ReadOnlySpan<byte> data)
    {
        try
        {
            using IKeyIndex index = IndexFactory.Load(new MemoryStream(data.ToArray(), writable: false));
        }
        catch (Exception e) when (IsBadInput(e))
        {
        }
    }

    /// <summary>The exception types an index load documents for a bad stream.</summary>
    public static bool IsBadInput(Exception e) =>
        e is InvalidDataException or EndOfStreamException or ArgumentException || (e is DllNotFoundException && !FaissIndex.IsAvailable);
}

namespace KvDb.TestKit;

/// <summary>
/// A fresh, empty directory under the temp folder (a data directory for a durable store or server), deleted
/// with everything in it on dispose.
/// </summary>
public sealed class TempDirectory : IDisposable
{
    /// <summary>Creates <c>TEMP/{prefix}{12 hex digits}</c>.</summary>
    public TempDirectory(string prefix = "kvdb-test-")
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    /// <summary>The directory's full path.</summary>
    public string Path { get; }

    /// <inheritdoc/>
    public override string ToString() => Path;

    /// <summary>Deletes the directory; one already gone, or still held by a background writer, is left alone.</summary>
    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

namespace KvDb.Fuzz.Replay;

/// <summary>
/// Replays a fuzz target's seed corpus (fuzz/corpus/TARGET) and its crash regressions (fuzz/crashes/TARGET), which the
/// test projects copy next to their binaries: every file must return from the target or be refused with one of the
/// target's documented exception types (the target itself lets anything else escape).
/// </summary>
internal static class FuzzCorpus
{
    /// <summary>The corpus and regression files of <paramref name="target"/> (full paths, sorted).</summary>
    public static IReadOnlyList<string> Files(string target)
    {
        var files = new List<string>();
        foreach (string kind in (string[])["corpus", "crashes"])
        {
            string dir = Path.Combine(AppContext.BaseDirectory, "fuzz", kind, target);
            if (Directory.Exists(dir))
            {
                files.AddRange(Directory.EnumerateFiles(dir));
            }
        }

        files.Sort(StringComparer.Ordinal);
        return files;
    }

    /// <summary>Runs every file of <paramref name="target"/> through <paramref name="run"/>; returns how many ran. The first escaping exception names its file.</summary>
    public static int Replay(string target, KvDb.Fuzz.Targets.FuzzInput run)
    {
        IReadOnlyList<string> files = Files(target);
        foreach (string file in files)
        {
            try
            {
                run(File.ReadAllBytes(file));
            }
            catch (Exception e)
            {
                throw new InvalidOperationException($"fuzz input {Path.GetFileName(file)} of target {target} escaped its harness with {e.GetType().Name}", e);
            }
        }

        return files.Count;
    }
}

using System.Reflection;
using System.Xml.Linq;

namespace KvDb.Architecture.Tests;

/// <summary>The real dependency graphs: compiled assembly references and src/ project references.</summary>
internal static class ReferenceGraphs
{
    /// <summary>
    /// Each KvDb assembly in the table, and each KvDb assembly they reference, mapped to the names in its
    /// <see cref="Assembly.GetReferencedAssemblies"/> (what the compiler recorded: the types it actually uses).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyCollection<string>> CompiledReferences()
    {
        var graph = new Dictionary<string, IReadOnlyCollection<string>>(StringComparer.Ordinal);
        var pending = new Queue<string>(DependencyRules.Allowed.Keys);
        while (pending.Count > 0)
        {
            string name = pending.Dequeue();
            if (graph.ContainsKey(name))
            {
                continue;
            }

            string[] references = Assembly.Load(new AssemblyName(name)).GetReferencedAssemblies().Select(r => r.Name!).ToArray();
            graph[name] = references;
            foreach (string reference in references.Where(DependencyRules.IsKvDb))
            {
                pending.Enqueue(reference);
            }
        }

        return graph;
    }

    /// <summary>The repository root (the folder holding KvDb.sln) above the test binaries, or null when they run elsewhere.</summary>
    public static string? RepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "KvDb.sln")))
            {
                return dir.FullName;
            }
        }

        return null;
    }

    /// <summary>Each src/ project's assembly name mapped to the assembly names of its ProjectReferences.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyCollection<string>> ProjectReferences(string repositoryRoot)
    {
        var graph = new Dictionary<string, IReadOnlyCollection<string>>(StringComparer.Ordinal);
        foreach (string project in Directory.EnumerateFiles(Path.Combine(repositoryRoot, "src"), "*.csproj", SearchOption.AllDirectories))
        {
            XDocument xml = XDocument.Load(project);
            string[] references = xml.Descendants("ProjectReference")
                .Select(r => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(project)!, (string)r.Attribute("Include")!)))
                .Select(AssemblyNameOf)
                .ToArray();
            graph[AssemblyNameOf(project)] = references;
        }

        return graph;
    }

    /// <summary>The project's AssemblyName property, or its file name when it sets none.</summary>
    public static string AssemblyNameOf(string projectPath)
    {
        string? declared = XDocument.Load(projectPath).Descendants("AssemblyName").Select(e => e.Value.Trim()).FirstOrDefault();
        return string.IsNullOrEmpty(declared) ? Path.GetFileNameWithoutExtension(projectPath) : declared;
    }
}

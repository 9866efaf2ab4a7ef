namespace KvDb.Architecture.Tests;

/// <summary>
/// The layer table: which KvDb assemblies each KvDb assembly may reference directly. The order is
/// Cli → Server → QueryEngine → Index → Store → Kernels → Core, Protocol → Core, Client → Protocol (→ Core);
/// Server also references Protocol, Cli also Client and Workload, Workload only Kernels and Core. Skipping layers
/// downward is allowed, so each entry lists every assembly below it; pointing upward never is.
/// </summary>
internal static class DependencyRules
{
    public const string Core = "KvDb.Core";
    public const string Kernels = "KvDb.Kernels";
    public const string Store = "KvDb.Store";
    public const string Index = "KvDb.Index";
    public const string QueryEngine = "KvDb.QueryEngine";
    public const string Protocol = "KvDb.Protocol";
    public const string Client = "KvDb.Client";
    public const string Server = "KvDb.Server";
    public const string Workload = "KvDb.Workload";

    /// <summary>src/Cli builds the kvdb executable, so its assembly is named "kvdb".</summary>
    public const string Cli = "kvdb";

    /// <summary>Allowed direct KvDb references per KvDb assembly.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> Allowed = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        [Core] = [],
        [Kernels] = [Core],
        [Store] = [Kernels, Core],
        [Index] = [Store, Kernels, Core],
        [QueryEngine] = [Index, Store, Kernels, Core],
        [Protocol] = [Core],
        [Client] = [Protocol, Core],
        [Server] = [QueryEngine, Index, Store, Kernels, Core, Protocol],
        [Workload] = [Kernels, Core],
        [Cli] = [Server, QueryEngine, Index, Store, Kernels, Core, Protocol, Client, Workload],
    };

    /// <summary>True for the names of KvDb's own assemblies (the ones the table governs).</summary>
    public static bool IsKvDb(string assemblyName) =>
        assemblyName.StartsWith("KvDb.", StringComparison.Ordinal) || string.Equals(assemblyName, Cli, StringComparison.Ordinal);

    /// <summary>
    /// Every edge of <paramref name="references"/> (assembly → its direct references) that the table does not allow,
    /// one message per edge naming it; non-KvDb references are ignored, a KvDb assembly missing from the table is reported.
    /// </summary>
    public static IReadOnlyList<string> FindViolations(IReadOnlyDictionary<string, IReadOnlyCollection<string>> references)
    {
        var violations = new List<string>();
        foreach ((string from, IReadOnlyCollection<string> targets) in references.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!IsKvDb(from))
            {
                continue;
            }

            if (!Allowed.TryGetValue(from, out string[]? allowed))
            {
                violations.Add($"{from} is not in the layer table: add it to DependencyRules.Allowed with the assemblies it may reference");
                continue;
            }

            foreach (string to in targets.Where(IsKvDb).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                if (!allowed.Contains(to, StringComparer.Ordinal))
                {
                    string may = allowed.Length == 0 ? "no KvDb assembly" : string.Join(", ", allowed);
                    violations.Add($"{from} -> {to} is not allowed ({from} may reference {may})");
                }
            }
        }

        return violations;
    }

    /// <summary>Every assembly reachable from <paramref name="root"/> through <paramref name="references"/>, the root excluded.</summary>
    public static IReadOnlySet<string> Closure(IReadOnlyDictionary<string, IReadOnlyCollection<string>> references, string root)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            if (!references.TryGetValue(pending.Pop(), out IReadOnlyCollection<string>? targets))
            {
                continue;
            }

            foreach (string to in targets)
            {
                if (!string.Equals(to, root, StringComparison.Ordinal) && seen.Add(to))
                {
                    pending.Push(to);
                }
            }
        }

        return seen;
    }
}

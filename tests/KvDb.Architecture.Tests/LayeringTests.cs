namespace KvDb.Architecture.Tests;

/// <summary>Dependencies point one way: down the layer table in <see cref="DependencyRules"/>.</summary>
public class LayeringTests
{
    private static readonly string[] KernelSide = [DependencyRules.Kernels, DependencyRules.Store];

    [Fact]
    public void CompiledAssemblies_ReferenceOnlyAllowedLayers()
    {
        IReadOnlyList<string> violations = DependencyRules.FindViolations(ReferenceGraphs.CompiledReferences());
        Assert.True(violations.Count == 0, "upward or unlisted assembly references:\n" + string.Join("\n", violations));
    }

    [SkippableFact]
    public void ProjectFiles_ReferenceOnlyAllowedLayers()
    {
        // Project references the compiler drops (nothing used) still ship the assembly with the app; check them too.
        string? root = ReferenceGraphs.RepositoryRoot();
        Skip.If(root is null, "the tests run outside the repository; no src/ project files to read");
        IReadOnlyList<string> violations = DependencyRules.FindViolations(ReferenceGraphs.ProjectReferences(root));
        Assert.True(violations.Count == 0, "upward or unlisted project references:\n" + string.Join("\n", violations));
    }

    [SkippableFact]
    public void EverySourceProject_IsInTheLayerTable()
    {
        string? root = ReferenceGraphs.RepositoryRoot();
        Skip.If(root is null, "the tests run outside the repository; no src/ project files to read");
        string[] missing = ReferenceGraphs.ProjectReferences(root).Keys
            .Where(name => !DependencyRules.Allowed.ContainsKey(name))
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.True(missing.Length == 0, "src projects missing from DependencyRules.Allowed: " + string.Join(", ", missing));
    }

    [Fact]
    public void Client_DoesNotReachKernelsOrStore_Transitively()
    {
        IReadOnlySet<string> closure = DependencyRules.Closure(ReferenceGraphs.CompiledReferences(), DependencyRules.Client);
        Assert.Contains(DependencyRules.Protocol, closure);
        Assert.Contains(DependencyRules.Core, closure);
        foreach (string forbidden in KernelSide)
        {
            Assert.False(closure.Contains(forbidden), $"KvDb.Client reaches {forbidden} through: {string.Join(", ", closure.Where(DependencyRules.IsKvDb).Order(StringComparer.Ordinal))}");
        }
    }

    [Fact]
    public void Rules_ReportEveryUpwardEdge_AndNameIt()
    {
        var graph = new Dictionary<string, IReadOnlyCollection<string>>
        {
            [DependencyRules.Core] = ["System.Runtime"],
            [DependencyRules.Protocol] = [DependencyRules.Core, DependencyRules.Kernels, "Google.Protobuf"],
            [DependencyRules.Store] = [DependencyRules.Kernels, DependencyRules.Index],
            [DependencyRules.Kernels] = [DependencyRules.Core, DependencyRules.Cli],
            [DependencyRules.QueryEngine] = [DependencyRules.Index, DependencyRules.Kernels],
        };

        IReadOnlyList<string> violations = DependencyRules.FindViolations(graph);

        Assert.Equal(3, violations.Count);
        Assert.Contains(violations, v => v.StartsWith("KvDb.Kernels -> kvdb ", StringComparison.Ordinal));
        Assert.Contains(violations, v => v.StartsWith("KvDb.Protocol -> KvDb.Kernels ", StringComparison.Ordinal));
        Assert.Contains(violations, v => v.StartsWith("KvDb.Store -> KvDb.Index ", StringComparison.Ordinal));
    }

    [Fact]
    public void Rules_ReportAnAssemblyMissingFromTheTable()
    {
        var graph = new Dictionary<string, IReadOnlyCollection<string>>
        {
            ["KvDb.Plugins"] = [DependencyRules.Core],
            [DependencyRules.Server] = ["KvDb.Plugins"],
        };

        IReadOnlyList<string> violations = DependencyRules.FindViolations(graph);

        Assert.Contains(violations, v => v.StartsWith("KvDb.Plugins is not in the layer table", StringComparison.Ordinal));
        Assert.Contains(violations, v => v.StartsWith("KvDb.Server -> KvDb.Plugins ", StringComparison.Ordinal));
    }

    [Fact]
    public void Rules_AcceptTheFullAllowedTable()
    {
        var graph = DependencyRules.Allowed.ToDictionary(p => p.Key, p => (IReadOnlyCollection<string>)p.Value);
        Assert.Empty(DependencyRules.FindViolations(graph));
    }

    [Fact]
    public void Closure_FollowsIndirectReferences()
    {
        var graph = new Dictionary<string, IReadOnlyCollection<string>>
        {
            [DependencyRules.Client] = [DependencyRules.Protocol],
            [DependencyRules.Protocol] = [DependencyRules.Core, DependencyRules.Kernels],
            [DependencyRules.Kernels] = [DependencyRules.Core, DependencyRules.Client],
        };

        IReadOnlySet<string> closure = DependencyRules.Closure(graph, DependencyRules.Client);

        Assert.Equal([DependencyRules.Core, DependencyRules.Kernels, DependencyRules.Protocol], closure.Order(StringComparer.Ordinal));
    }
}

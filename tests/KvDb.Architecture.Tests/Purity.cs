using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Security;

namespace KvDb.Architecture.Tests;

/// <summary>Detectors for code a client-side assembly must not carry: unsafe code, P/Invoke, native library loading.</summary>
internal static class Purity
{
    private const BindingFlags AllDeclared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>
    /// True when the module carries <see cref="UnverifiableCodeAttribute"/>, which the compiler emits for every
    /// assembly built with AllowUnsafeBlocks.
    /// </summary>
    public static bool HasUnverifiableCode(Assembly assembly) =>
        assembly.Modules.Any(m => m.IsDefined(typeof(UnverifiableCodeAttribute), inherit: false));

    /// <summary>
    /// "Type.Method" of every P/Invoke method: declared with DllImport (PinvokeImpl), or marked LibraryImport
    /// (whose generated stub is itself a PinvokeImpl local function, so either way it is found).
    /// </summary>
    public static IReadOnlyList<string> PInvokeMethods(Assembly assembly)
    {
        var found = new List<string>();
        foreach (Type type in assembly.GetTypes())
        {
            foreach (MethodInfo method in type.GetMethods(AllDeclared))
            {
                bool pinvoke = (method.Attributes & MethodAttributes.PinvokeImpl) != 0
                    || method.CustomAttributes.Any(a => a.AttributeType.FullName is "System.Runtime.InteropServices.DllImportAttribute" or "System.Runtime.InteropServices.LibraryImportAttribute");
                if (pinvoke)
                {
                    found.Add($"{type.FullName}.{method.Name}");
                }
            }
        }

        return found;
    }

    /// <summary>True when the assembly's metadata references System.Runtime.InteropServices.NativeLibrary (loading native code by hand).</summary>
    public static bool ReferencesNativeLibrary(Assembly assembly)
    {
        using var stream = File.OpenRead(assembly.Location);
        using var pe = new PEReader(stream);
        MetadataReader metadata = pe.GetMetadataReader();
        return metadata.TypeReferences.Select(metadata.GetTypeReference).Any(t =>
            metadata.StringComparer.Equals(t.Name, "NativeLibrary") && metadata.StringComparer.Equals(t.Namespace, "System.Runtime.InteropServices"));
    }
}

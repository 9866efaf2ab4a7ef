namespace KvDb.Store;

/// <summary>
/// Groups blocks by who owns them for resident shares (<see cref="BlockManager.ResidentShare"/>). A namespace
/// "OWNER:rest" belongs to OWNER (the server stores tenant T's namespaces as "T:…"); any other namespace (the
/// open server's, shared "@NAME" ones) belongs to the empty owner, which has no guaranteed share.
/// </summary>
public static class BlockOwner
{
    /// <summary>The owner of namespace <paramref name="ns"/>.</summary>
    public static string Of(string ns)
    {
        int colon = ns.IndexOf(':');
        // Interned: every block of an owner holds the same string (owners are few and long-lived).
        return colon > 0 ? string.Intern(ns[..colon]) : string.Empty;
    }
}

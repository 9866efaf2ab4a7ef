using System.Globalization;

namespace KvDb.Store;

/// <summary>
/// The content address of one full block: the hash chain value of its token position (which commits to the
/// model, the namespace and every token id up to the block's end) plus the layer. Stable across restarts
/// and machines; see docs/storage.md for the byte encoding.
/// </summary>
public readonly record struct BlockAddress(UInt128 Chain, int Layer)
{
    /// <summary>"32 hex digits of the chain hash/layer", e.g. "0f…a1/3".</summary>
    public override string ToString() => BlockHashing.ToHex(Chain) + "/" + Layer.ToString(CultureInfo.InvariantCulture);
}

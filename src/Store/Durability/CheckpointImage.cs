namespace KvDb.Store.Durability;

/// <summary>
/// The committed state captured by a checkpoint: models, every context's committed layers (full blocks by
/// reference, the partial tail by value) and where log replay must start.
/// </summary>
internal sealed class CheckpointImage
{
    /// <summary>Log records at or after this address are replayed.</summary>
    public long Cut { get; set; }

    /// <summary>Replay starts here (≤ <see cref="Cut"/>): the first record of any transaction still open at the cut.</summary>
    public long ReplayFrom { get; set; }

    /// <summary>Transactions open at the cut: their records before the cut are replayed too.</summary>
    public HashSet<long> OpenTransactions { get; } = [];

    public long NextTransactionId { get; set; }

    public List<ModelSchema> Models { get; } = [];

    public List<ContextImage> Contexts { get; } = [];
}

/// <summary>One context in a checkpoint.</summary>
internal sealed class ContextImage
{
    public required string Id { get; init; }

    public required string Model { get; init; }

    public required string Namespace { get; init; }

    public long CreatedUnixMs { get; init; }

    public long ExpiresAtUnixMs { get; init; }

    /// <summary>Pinned contexts are written in a trailing section (files of older versions have none: nothing pinned).</summary>
    public bool Pinned { get; set; }

    /// <summary>The tier of the pin, in a second trailing section listing pins other than CPU (absent in older files: every pin is CPU).</summary>
    public PinTier PinTier { get; set; }

    public required int[] TokenIds { get; init; }

    public required LayerImage[] Layers { get; init; }
}

/// <summary>One layer of a context in a checkpoint.</summary>
internal sealed class LayerImage
{
    public long Length { get; init; }

    /// <summary>Full blocks while capturing (each holds a reference until the checkpoint is written).</summary>
    public List<KvBlock> Blocks { get; } = [];

    /// <summary>Full blocks as read back: content checksum and disk-tier handle.</summary>
    public List<(ulong Checksum, long Handle)> Stored { get; } = [];

    /// <summary>The partial tail's rows in wire layout (keys then values), empty when the layer ends on a block boundary.</summary>
    public byte[] TailKeys { get; init; } = [];

    public byte[] TailValues { get; init; } = [];
}

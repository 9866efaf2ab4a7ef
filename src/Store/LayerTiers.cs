namespace KvDb.Store;

/// <summary>
/// Where one context layer's blocks are: <see cref="Resident"/> in the CPU tier, <see cref="OnDisk"/> with a disk copy
/// (a block can be both), <see cref="Shared"/> referenced by another context too (a shared prefix or a fork).
/// </summary>
public sealed record LayerTiers(int Layer, long Tokens, int Blocks, int Resident, int OnDisk, int Shared);

using KvDb.QueryEngine.Explain;

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// What one KV head attends, as chosen by a plan's select phase, and what choosing it read. Either
/// <see cref="Dense"/>: every stored token outside the exclude range (the exact kernels run it, on the GPU tier
/// when the whole layer is dense), or gathered <see cref="Positions"/> (ascending) with optional
/// <see cref="LogWeights"/> [group rows = queries × group, positions] added to the scaled scores (−∞ drops a
/// position for a row; sampling plans weigh samples by −log p), or <see cref="Computed"/>: the plan already
/// attended its exact <see cref="Positions"/> and a uniform <see cref="Sampled"/> set weighted by
/// <see cref="SampleLogWeight"/>, and carries the merged <see cref="Partial"/>.
/// </summary>
public sealed class HeadSelection
{
    private HeadSelection(bool dense, long[] positions, float[]? logWeights, long scanned, long scannedBytes, HeadChoice choice = HeadChoice.Planned, long[]? sampled = null, float sampleLogWeight = 0, GroupPartial? partial = null)
    {
        IsDense = dense;
        Positions = positions;
        LogWeights = logWeights;
        Scanned = scanned;
        ScannedBytes = scannedBytes;
        Choice = choice;
        Sampled = sampled ?? [];
        SampleLogWeight = sampleLogWeight;
        Partial = partial;
    }

    /// <summary>Every token outside the exclude range.</summary>
    public static HeadSelection Dense { get; } = new(true, [], null, 0, 0);

    /// <summary>Why the head was answered this way.</summary>
    public HeadChoice Choice { get; }

    /// <summary>
    /// For the explain: rows (heavy hitters + sample) the quality contract's sampled answer needed where the plan
    /// answered otherwise (a diffuse head answered exactly, a sample cut to the latency target); 0 otherwise.
    /// </summary>
    public long ContractRows { get; private init; }

    /// <summary>Positions attended as a uniform sample of the residual, ascending (empty unless computed).</summary>
    public long[] Sampled { get; }

    /// <summary>The log-weight every sampled position carries: ln(residual tokens / sample size).</summary>
    public float SampleLogWeight { get; }

    /// <summary>The answer, when the plan computed it while selecting; null otherwise.</summary>
    public GroupPartial? Partial { get; }

    /// <summary>True for the dense selection.</summary>
    public bool IsDense { get; }

    /// <summary>Gathered positions, ascending (empty when dense).</summary>
    public long[] Positions { get; }

    /// <summary>Log-weights [rows, Positions.Length], or null for weight 1 everywhere.</summary>
    public float[]? LogWeights { get; }

    /// <summary>Key-sized vectors read to choose the positions (index summaries, keys rescored or weighed).</summary>
    public long Scanned { get; }

    /// <summary>Bytes those reads are counted as.</summary>
    public long ScannedBytes { get; }

    /// <summary>Every token outside the exclude range, chosen for <paramref name="choice"/>; <paramref name="scanned"/> counts what deciding read.</summary>
    public static HeadSelection DenseBecause(HeadChoice choice, long scanned = 0, long scannedBytes = 0, long contractRows = 0) =>
        new(true, [], null, scanned, scannedBytes, choice) { ContractRows = contractRows };

    /// <summary>This selection, noting the rows the contract's sampled answer needed (<see cref="ContractRows"/>).</summary>
    public HeadSelection WithContractRows(long rows) =>
        new(IsDense, Positions, LogWeights, Scanned, ScannedBytes, Choice, Sampled, SampleLogWeight, Partial) { ContractRows = rows };

    /// <summary>A selection the plan already attended: <paramref name="exact"/> with weight 1, <paramref name="sampled"/> with <paramref name="sampleLogWeight"/>.</summary>
    public static HeadSelection Computed(long[] exact, long[] sampled, float sampleLogWeight, GroupPartial partial, HeadChoice choice) =>
        new(false, exact, null, 0, 0, choice, sampled, sampleLogWeight, partial);

    /// <summary>A gathered selection.</summary>
    public static HeadSelection Gathered(long[] positions, float[]? logWeights, long scanned, long scannedBytes) =>
        new(false, positions, logWeights, scanned, scannedBytes);
}

namespace KvDb.QueryEngine.Plans;

/// <summary>
/// What one KV head attends, as chosen by a plan's select phase, and what choosing it read. Either
/// <see cref="Dense"/>: every stored token outside the exclude range (the exact kernels run it, on the GPU tier
/// when the whole layer is dense), or gathered <see cref="Positions"/> (ascending) with optional
/// <see cref="LogWeights"/> [group rows = queries × group, positions] added to the scaled scores (−∞ drops a
/// position for a row; sampling plans weigh samples by −log p).
/// </summary>
public sealed class HeadSelection
{
    private HeadSelection(bool dense, long[] positions, float[]? logWeights, long scanned, long scannedBytes)
    {
        IsDense = dense;
        Positions = positions;
        LogWeights = logWeights;
        Scanned = scanned;
        ScannedBytes = scannedBytes;
    }

    /// <summary>Every token outside the exclude range.</summary>
    public static HeadSelection Dense { get; } = new(true, [], null, 0, 0);

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

    /// <summary>A gathered selection.</summary>
    public static HeadSelection Gathered(long[] positions, float[]? logWeights, long scanned, long scannedBytes) =>
        new(false, positions, logWeights, scanned, scannedBytes);
}

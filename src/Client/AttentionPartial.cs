using KvDb.Protocol.V1;

namespace KvDb.Client;

/// <summary>
/// A partial attention result: output f32 [q, heads, dim] and LSE f32 [q, heads] over some set of tokens.
/// Engines merge KvDb's partial with the one over their local window using <see cref="Merge"/>.
/// </summary>
public sealed record AttentionPartial(float[] Output, float[] Lse, int NumQueries, int NumHeads, int HeadDim, AttendStats? Stats = null)
{
    /// <summary>An empty partial (lse = −∞, output 0): the identity of <see cref="Merge"/>.</summary>
    public static AttentionPartial Empty(int numQueries, int numHeads, int headDim)
    {
        var lse = new float[numQueries * numHeads];
        Array.Fill(lse, float.NegativeInfinity);
        return new AttentionPartial(new float[numQueries * numHeads * headDim], lse, numQueries, numHeads, headDim);
    }

    /// <summary>
    /// Attention over the union of two disjoint token sets (BRIEF section 5): m = max(lse1, lse2),
    /// w_i = exp(lse_i − m), o = (w1·o1 + w2·o2)/(w1 + w2), lse = m + log(w1 + w2).
    /// </summary>
    public static AttentionPartial Merge(AttentionPartial a, AttentionPartial b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.NumQueries != b.NumQueries || a.NumHeads != b.NumHeads || a.HeadDim != b.HeadDim)
        {
            throw new ArgumentException("partials must have the same [q, heads, dim] shape");
        }

        float[] output = (float[])a.Output.Clone();
        float[] lse = (float[])a.Lse.Clone();
        PartialAttention.MergeInto(output, lse, b.Output, b.Lse);
        return new AttentionPartial(output, lse, a.NumQueries, a.NumHeads, a.HeadDim);
    }
}

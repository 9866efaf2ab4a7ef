using KvDb.Fuzz.Replay;
using KvDb.Fuzz.Targets;
using KvDb.Protocol.V1;

namespace KvDb.Protocol.Tests;

/// <summary>
/// CI's share of the fuzzing (fuzz/README.md): the tensor target's seed corpus and crash regressions run through the
/// harness AFL++ drives, and the encoder-made seeds still pass the checks they were shaped for.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Fact]
    public void Every_tensor_corpus_file_decodes_or_is_refused_as_documented() =>
        Assert.True(FuzzCorpus.Replay(TensorTarget.Name, TensorTarget.Run) >= 7);

    [Fact]
    public void Query_seed_passes_the_query_checks_with_its_shape()
    {
        Tensor t = Tensor.Parser.ParseFrom(File.ReadAllBytes(FuzzCorpus.Files(TensorTarget.Name).Single(f => f.EndsWith("queries-f32", StringComparison.Ordinal))));
        Assert.Equal((2, TensorTarget.QueryHeads, TensorTarget.HeadDim), TensorCodec.CheckQueryShape("queries", t));
        Assert.Equal(2 * TensorTarget.QueryHeads * TensorTarget.HeadDim, TensorCodec.ToFiniteSingles("queries", t).Length);
    }
}

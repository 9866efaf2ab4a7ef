using KvDb.Fuzz.Replay;
using KvDb.Fuzz.Targets;
using KvDb.Index.Catalog;

namespace KvDb.Index.Tests;

/// <summary>
/// CI's share of the fuzzing (fuzz/README.md): the index-stream and .kix targets' seed corpora and crash regressions run
/// through the harness functions AFL++ drives, and the encoder-made .kix seeds still load as the segment they describe.
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Theory]
    [InlineData(IndexTarget.Name)]
    [InlineData(KixTarget.Name)]
    public void Every_corpus_file_loads_or_is_refused_as_documented(string target) =>
        Assert.True(FuzzCorpus.Replay(target, target == KixTarget.Name ? KixTarget.Run : IndexTarget.Run) >= 4);

    [Theory]
    [InlineData("block", "block")]
    [InlineData("centroid", "centroid:L2,C4")]
    [InlineData("lsh", "lsh:K4,L4")]
    [InlineData("graph", "graph:R4,Q8")]
    public void Kix_seed_loads_as_the_segment_it_was_saved_from(string file, string spec)
    {
        string path = FuzzCorpus.Files(KixTarget.Name).Single(f => Path.GetFileName(f) == file);
        using var stream = new MemoryStream(File.ReadAllBytes(path));
        using IndexSegment segment = IndexSegmentFiles.Read(stream, KixTarget.Key, 0, spec, KixTarget.Model);
        Assert.Equal(KixTarget.Model.NumKvHeads, segment.KvHeads);
        Assert.Equal(48, segment.EndToken);
        Assert.Equal(KixTarget.Model.HeadDim, segment[1].Dimension);
    }
}

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

    [Fact]
    public void A_kix_file_with_a_corrupt_header_is_moved_aside_by_garbage_collection_not_thrown()
    {
        using var dir = new KvDb.TestKit.TempDirectory();
        byte[] seed = File.ReadAllBytes(FuzzCorpus.Files(KixTarget.Name).Single(f => Path.GetFileName(f) == "block"));
        // The spec string's 7-bit length prefix (after magic, version and four i32s) made of continuation bytes only.
        seed.AsSpan(24, 5).Fill(0xFF);
        File.WriteAllBytes(Path.Combine(dir.Path, IndexSegmentFiles.FileName(KixTarget.Key, 0, "block")), seed);
        var files = new IndexSegmentFiles(dir.Path);
        var moved = new List<string>();

        int deleted = files.CollectGarbage((_, _) => true, (name, _, _) => moved.Add(name));

        Assert.Equal(0, deleted);
        Assert.Single(moved);
        Assert.Equal(0, files.Count);
    }
}

using System.Buffers.Binary;
using KvDb.Fuzz.Replay;
using KvDb.Fuzz.Targets;
using KvDb.Store.Durability;

namespace KvDb.Store.Tests;

/// <summary>
/// CI's share of the fuzzing (fuzz/README.md): the WAL, checkpoint and disk-block targets' seed corpora and crash
/// regressions run through the same harness functions AFL++ drives, and the seeds still decode to what the encoders
/// wrote (a corpus that no longer decodes would leave the fuzzer starting from garbage).
/// </summary>
public sealed class FuzzCorpusReplayTests
{
    [Theory]
    [InlineData(WalTarget.Name, 11)]
    [InlineData(CheckpointTarget.Name, 2)]
    [InlineData(BlockTarget.Name, 3)]
    public void Every_corpus_file_decodes_or_is_refused_as_documented(string target, int seeds)
    {
        FuzzInput run = target switch
        {
            WalTarget.Name => WalTarget.Run,
            CheckpointTarget.Name => CheckpointTarget.Run,
            _ => BlockTarget.Run,
        };
        Assert.True(FuzzCorpus.Replay(target, run) >= seeds);
    }

    [Fact]
    public void Wal_seeds_decode_to_the_record_type_they_are_named_after()
    {
        int decoded = 0;
        foreach (string file in FuzzCorpus.Files(WalTarget.Name))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith("edge-", StringComparison.Ordinal) || file.Contains("crashes", StringComparison.Ordinal))
            {
                continue;
            }

            Assert.True(WalCodec.TryDecode(File.ReadAllBytes(file), out WalRecord? record), name);
            Assert.Equal(name, record.Type.ToString().ToLowerInvariant());
            decoded++;
        }

        Assert.Equal(9, decoded);
    }

    [Fact]
    public void Checkpoint_seed_reads_back_its_contexts_and_pins()
    {
        CheckpointImage? image = CheckpointFile.Read(File.ReadAllBytes(FuzzCorpus.Files(CheckpointTarget.Name).Single(f => f.EndsWith("two-contexts", StringComparison.Ordinal))));
        Assert.NotNull(image);
        Assert.Equal(4096, image.Cut);
        Assert.Equal(["a", "b"], image.Contexts.Select(c => c.Id));
        Assert.Equal(2, image.Contexts[0].Layers[1].Length);
        Assert.Equal(64, image.Contexts[0].Layers[1].TailKeys.Length);
        Assert.True(image.Contexts[1].Pinned);
        Assert.Equal(PinTier.Gpu, image.Contexts[1].PinTier);
    }

    [Fact]
    public void Block_record_opens_only_for_its_address_checksum_and_content()
    {
        byte[] record = File.ReadAllBytes(FuzzCorpus.Files(BlockTarget.Name).Single(f => f.EndsWith("block-64", StringComparison.Ordinal)));
        var address = new BlockAddress(BinaryPrimitives.ReadUInt128LittleEndian(record.AsSpan(8)), BinaryPrimitives.ReadInt32LittleEndian(record.AsSpan(4)));
        ulong checksum = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(24));

        Assert.True(BlockRecord.TryOpen(record, address, checksum, 64, out ReadOnlySpan<byte> block));
        Assert.Equal(record.AsSpan(BlockRecord.HeaderBytes).ToArray(), block.ToArray());
        Assert.False(BlockRecord.TryOpen(record, address with { Layer = address.Layer + 1 }, checksum, 64, out _));
        Assert.False(BlockRecord.TryOpen(record, address, checksum, 63, out _));
        record[^1] ^= 1;
        Assert.False(BlockRecord.TryOpen(record, address, checksum, 64, out _));
    }
}

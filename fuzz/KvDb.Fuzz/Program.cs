using KvDb.Fuzz.Targets;
using SharpFuzz;

namespace KvDb.Fuzz;

/// <summary>
/// `KvDb.Fuzz TARGET` runs one target under AFL++ (SharpFuzz's out-of-process loop: AFL starts this process once and
/// feeds it inputs through shared memory); `KvDb.Fuzz TARGET FILE...` runs files through a target once (a crash
/// reproduces as an unhandled exception); `KvDb.Fuzz seed DIR` writes the seed corpus (DIR/TARGET/*).
/// </summary>
internal static class Program
{
    private static readonly Dictionary<string, FuzzInput> Targets = new(StringComparer.Ordinal)
    {
        [TensorTarget.Name] = TensorTarget.Run,
        [WalTarget.Name] = WalTarget.Run,
        [CheckpointTarget.Name] = CheckpointTarget.Run,
        [BlockTarget.Name] = BlockTarget.Run,
        [IndexTarget.Name] = IndexTarget.Run,
        [KixTarget.Name] = KixTarget.Run,
    };

    private static int Main(string[] args)
    {
        if (args is ["seed", string dir])
        {
            SeedCorpus.Write(dir);
            return 0;
        }

        if (args.Length == 0 || !Targets.TryGetValue(args[0], out FuzzInput? target))
        {
            Console.Error.WriteLine($"usage: KvDb.Fuzz TARGET [FILE...] | KvDb.Fuzz seed DIR   (targets: {string.Join(", ", Targets.Keys)})");
            return 2;
        }

        if (args.Length > 1)
        {
            foreach (string file in args.AsSpan(1))
            {
                target(File.ReadAllBytes(file));
            }

            return 0;
        }

        Fuzzer.OutOfProcess.Run(stream =>
        {
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            target(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
        });
        return 0;
    }
}

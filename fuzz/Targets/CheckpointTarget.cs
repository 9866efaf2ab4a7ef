using KvDb.Store.Durability;

namespace KvDb.Fuzz.Targets;

/// <summary>
/// Checkpoint files: the whole file through <see cref="CheckpointFile.Read"/> (framing, checksum), then its payload
/// through <see cref="CheckpointFile.Parse"/> as if the checksum had passed. Bad input: null, or
/// <see cref="InvalidDataException"/>.
/// </summary>
internal static class CheckpointTarget
{
    public const string Name = "checkpoint";

    public static void Run(ReadOnlySpan<byte> data)
    {
        try
        {
            CheckpointFile.Read(data);
        }
        catch (InvalidDataException)
        {
        }

        if (data.Length < RecordWriter.HeaderBytes)
        {
            return;
        }

        try
        {
            CheckpointFile.Parse(data[RecordWriter.HeaderBytes..]);
        }
        catch (InvalidDataException)
        {
        }
    }
}

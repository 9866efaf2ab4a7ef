namespace KvDb.TestKit;

/// <summary>A string hash that is the same in every process and run (string.GetHashCode is randomized per process), for seeds and salts.</summary>
public static class StableHash
{
    /// <summary>17·31ⁿ-style polynomial hash of the UTF-16 code units, made non-negative.</summary>
    public static int Of(string s)
    {
        unchecked
        {
            int h = 17;
            foreach (char ch in s)
            {
                h = h * 31 + ch;
            }

            return h & int.MaxValue;
        }
    }
}

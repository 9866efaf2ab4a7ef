using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;

namespace KvDb.Server.Security;

/// <summary>
/// API keys: <c>kvdb.&lt;key id&gt;.&lt;secret&gt;</c>, a 12-hex-digit public id and 32 random bytes (base64url). The
/// server keeps only a salted SHA-256 of the secret: with 256 random bits a slow hash adds nothing (no dictionary to
/// guess from), and a fast one keeps authentication off the latency of every call.
/// </summary>
public static class ApiKey
{
    /// <summary>Longest authorization value parsed; anything longer is rejected before any work.</summary>
    public const int MaxLength = 256;

    private const string Prefix = "kvdb.";

    /// <summary>A new key: its public id and the full key to hand to the client once.</summary>
    public static (string KeyId, string Key) Create()
    {
        string keyId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        string secret = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));
        return (keyId, $"{Prefix}{keyId}.{secret}");
    }

    /// <summary>Splits a presented key; false (nothing else said) for anything not shaped like a key.</summary>
    public static bool TryParse(string? key, out string keyId, out string secret)
    {
        keyId = string.Empty;
        secret = string.Empty;
        if (key is null || key.Length > MaxLength || !key.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        int dot = key.IndexOf('.', Prefix.Length);
        if (dot != Prefix.Length + 12 || dot == key.Length - 1)
        {
            return false;
        }

        keyId = key[Prefix.Length..dot];
        secret = key[(dot + 1)..];
        return true;
    }

    /// <summary>Salted SHA-256 of a secret.</summary>
    public static byte[] Hash(byte[] salt, string secret)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(secret);
        var input = new byte[salt.Length + bytes.Length];
        salt.CopyTo(input, 0);
        bytes.CopyTo(input, salt.Length);
        return SHA256.HashData(input);
    }

    /// <summary>Constant-time comparison of <paramref name="secret"/> against a stored salted hash.</summary>
    public static bool Matches(byte[] salt, byte[] hash, string secret) =>
        CryptographicOperations.FixedTimeEquals(Hash(salt, secret), hash);
}

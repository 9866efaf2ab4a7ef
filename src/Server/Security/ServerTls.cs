using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace KvDb.Server.Security;

/// <summary>
/// TLS for the gRPC port from PEM files (<c>--tls-cert</c>, <c>--tls-key</c>) and, for mutual TLS, a PEM CA bundle
/// (<c>--tls-client-ca</c>): a client certificate must chain to one of those CAs (and only to them: the system's roots
/// do not count), checked by the server itself. Keys still authenticate the caller; the certificate only admits it.
/// </summary>
public static class ServerTls
{
    /// <summary>The server certificate with its key, or null without TLS; a missing or unreadable file is an error that names it.</summary>
    public static X509Certificate2? LoadCertificate(KvDbServerOptions options)
    {
        if (!options.UsesTls)
        {
            if (!string.IsNullOrEmpty(options.TlsKeyPath) || !string.IsNullOrEmpty(options.TlsClientCaPath))
            {
                throw new InvalidOperationException("--tls-key and --tls-client-ca need --tls-cert (a PEM certificate) too");
            }

            return null;
        }

        if (string.IsNullOrEmpty(options.TlsKeyPath))
        {
            throw new InvalidOperationException("--tls-cert needs --tls-key (the PEM private key of the certificate)");
        }

        try
        {
            return X509Certificate2.CreateFromPemFile(options.TlsCertificatePath!, options.TlsKeyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new InvalidOperationException($"cannot load the TLS certificate {options.TlsCertificatePath} with key {options.TlsKeyPath}: {e.Message}", e);
        }
    }

    /// <summary>The CAs client certificates must chain to, or null when clients need none.</summary>
    public static X509Certificate2Collection? LoadClientCas(KvDbServerOptions options)
    {
        if (string.IsNullOrEmpty(options.TlsClientCaPath))
        {
            return null;
        }

        var cas = new X509Certificate2Collection();
        try
        {
            cas.ImportFromPemFile(options.TlsClientCaPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new InvalidOperationException($"cannot read the client CA file {options.TlsClientCaPath}: {e.Message}", e);
        }

        return cas.Count > 0 ? cas : throw new InvalidOperationException($"{options.TlsClientCaPath} holds no PEM certificate");
    }

    /// <summary>Sets the server certificate and, with <paramref name="clientCas"/>, requires and checks client certificates.</summary>
    public static void Configure(HttpsConnectionAdapterOptions https, X509Certificate2 certificate, X509Certificate2Collection? clientCas)
    {
        https.ServerCertificate = certificate;
        if (clientCas is null)
        {
            return;
        }

        https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
        https.ClientCertificateValidation = (client, _, _) => ChainsTo(client, clientCas);
    }

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="roots"/> (and is within its validity).</summary>
    public static bool ChainsTo(X509Certificate2 certificate, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }
}

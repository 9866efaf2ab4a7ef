using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using KvDb.Client;

namespace KvDb.Server.Tests;

/// <summary>TLS and mutual TLS on the gRPC port, with a CA and certificates made by the test (PEM files, as an operator has them).</summary>
public sealed class TlsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kvdb-tls-" + Guid.NewGuid().ToString("N"));

    public TlsTests()
    {
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Clients_that_trust_the_ca_are_served_over_tls_and_others_are_refused()
    {
        (string caFile, X509Certificate2 ca) = MakeCa("kvdb-test-ca");
        (string certFile, string keyFile) = MakeLeaf(ca, "localhost", server: true);
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions
        {
            Host = "127.0.0.1", Port = 0, CalibrateCosts = false, TlsCertificatePath = certFile, TlsKeyPath = keyFile,
        });
        Assert.StartsWith("https://", server.Address, StringComparison.Ordinal);

        using var trusting = new KvDbClient(server.Address, apiKey: null, caFile: caFile);
        Assert.NotNull(await trusting.ListContextsAsync());

        // The system's roots do not include the test CA: the handshake fails.
        using var untrusting = new KvDbClient(server.Address);
        RpcException refused = await Assert.ThrowsAsync<RpcException>(() => untrusting.ListContextsAsync());
        Assert.NotEqual(StatusCode.OK, refused.StatusCode);

        // Another CA's clients do not trust this server either.
        (string otherCa, _) = MakeCa("other-ca");
        using var wrongCa = new KvDbClient(server.Address, apiKey: null, caFile: otherCa);
        Assert.NotEqual(StatusCode.OK, (await Assert.ThrowsAsync<RpcException>(() => wrongCa.ListContextsAsync())).StatusCode);
    }

    [Fact]
    public async Task Mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca()
    {
        (string caFile, X509Certificate2 ca) = MakeCa("kvdb-test-ca");
        (string certFile, string keyFile) = MakeLeaf(ca, "localhost", server: true);
        (string clientCaFile, X509Certificate2 clientCa) = MakeCa("kvdb-client-ca");
        (string clientCert, string clientKey) = MakeLeaf(clientCa, "engine-1", server: false);
        (_, X509Certificate2 strangerCa) = MakeCa("stranger-ca");
        (string strangerCert, string strangerKey) = MakeLeaf(strangerCa, "stranger", server: false);

        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions
        {
            Host = "127.0.0.1", Port = 0, CalibrateCosts = false, TlsCertificatePath = certFile, TlsKeyPath = keyFile, TlsClientCaPath = clientCaFile,
        });

        using var admitted = new KvDbClient(server.Address, null, caFile, X509Certificate2.CreateFromPemFile(clientCert, clientKey));
        Assert.NotNull(await admitted.ListContextsAsync());

        using var anonymous = new KvDbClient(server.Address, null, caFile);
        Assert.NotEqual(StatusCode.OK, (await Assert.ThrowsAsync<RpcException>(() => anonymous.ListContextsAsync())).StatusCode);

        using var stranger = new KvDbClient(server.Address, null, caFile, X509Certificate2.CreateFromPemFile(strangerCert, strangerKey));
        Assert.NotEqual(StatusCode.OK, (await Assert.ThrowsAsync<RpcException>(() => stranger.ListContextsAsync())).StatusCode);
    }

    [Fact]
    public async Task A_missing_key_file_stops_the_start_with_a_message_naming_it()
    {
        (string caFile, X509Certificate2 ca) = MakeCa("kvdb-test-ca");
        (string certFile, _) = MakeLeaf(ca, "localhost", server: true);
        string missing = Path.Combine(_dir, "missing.key");
        InvalidOperationException e = await Assert.ThrowsAsync<InvalidOperationException>(() => KvDbServer.StartAsync(new KvDbServerOptions
        {
            Host = "127.0.0.1", Port = 0, CalibrateCosts = false, TlsCertificatePath = certFile, TlsKeyPath = missing,
        }));
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);
        Assert.True(File.Exists(caFile));
    }

    private (string File, X509Certificate2 Ca) MakeCa(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        X509Certificate2 ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        string file = Path.Combine(_dir, name + ".pem");
        File.WriteAllText(file, ca.ExportCertificatePem());
        return (file, ca);
    }

    private (string Cert, string Key) MakeLeaf(X509Certificate2 ca, string name, bool server)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        if (server)
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddDnsName("localhost");
            san.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(san.Build());
        }

        byte[] serial = RandomNumberGenerator.GetBytes(8);
        using X509Certificate2 cert = request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(10), serial);
        string certFile = Path.Combine(_dir, name + ".crt.pem");
        string keyFile = Path.Combine(_dir, name + ".key.pem");
        File.WriteAllText(certFile, cert.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return (certFile, keyFile);
    }
}

using Grpc.Core;
using KvDb.Client;
using KvDb.Fuzz.Requests;
using KvDb.Protocol.V1;
using KvDb.TestKit;

namespace KvDb.Server.Tests;

/// <summary>
/// CI's sample of the request-level fuzzer (bench suite fuzz-requests runs 10^5): mutated requests over every RPC
/// against a durable server with an admin key get no INTERNAL or UNKNOWN, no call hangs past its deadline, and the
/// protected contexts read back unchanged. Plus the regression for what the fuzzer found.
/// </summary>
public sealed class RequestFuzzTests
{
    private const string AdminKey = "fuzz-admin";

    [Fact]
    public async Task Mutated_requests_on_every_rpc_get_no_internal_or_unknown_and_leave_the_data_intact()
    {
        using var data = new TempDirectory();
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false, DataDirectory = data.Path, AdminKey = AdminKey, CpuBudgetBytes = 64L << 20 });
        using var client = new KvDbClient(server.Address, AdminKey);

        // 2,000 requests take ~10 s; the bound only keeps a broken server from holding CI up.
        RequestFuzzReport report = await RequestFuzzer.RunAsync(client, new RequestFuzzOptions(2000, Workers: 4, Seed: 7) { MaxDuration = TimeSpan.FromSeconds(150) });

        Assert.Empty(report.Violations);
        Assert.True(report.DataIntact);
        Assert.Equal(2000, report.Requests);
        // Every admission slot comes back once the calls are over (their deadlines have passed by then): a slot kept by
        // a cancelled or failed call would refuse every later query of the server.
        for (int i = 0; i < 400 && (server.Admission.Attend.Running > 0 || server.Admission.Append.Running > 0); i++)
        {
            await Task.Delay(50);
        }

        Assert.Equal((0, 0), (server.Admission.Attend.Running, server.Admission.Append.Running));

        // The mutations reached the edge checks, and valid calls still succeeded.
        Assert.True(report.Statuses.GetValueOrDefault(StatusCode.InvalidArgument) > 100);
        Assert.True(report.Statuses.GetValueOrDefault(StatusCode.OK) > 100);
    }

    [Theory]
    [InlineData("kvdb.v1.Contexts", "GetContext")]
    [InlineData("kvdb.v1.Attention", "Attend")]
    public async Task A_unary_request_that_does_not_parse_is_invalid_argument(string service, string method)
    {
        await using KvDbServerHandle server = await KvDbServer.StartAsync(new KvDbServerOptions { Port = 0, CalibrateCosts = false });
        using var client = new KvDbClient(server.Address);
        Marshaller<byte[]> raw = Marshallers.Create(b => b, b => b);

        // Field 1 declared as a 100-byte string with 1 byte following: truncated (the fuzzer found UNKNOWN here).
        var e = await Assert.ThrowsAsync<RpcException>(() => client.CallInvoker.AsyncUnaryCall(new Method<byte[], byte[]>(MethodType.Unary, service, method, raw, raw), null, default, [0x0A, 100, 0x41]).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        // The same server still answers a valid call on the rebinding.
        Assert.Empty((await client.Models.ListModelsAsync(new ListModelsRequest())).Models);
    }
}

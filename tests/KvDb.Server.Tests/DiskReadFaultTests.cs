using Grpc.Core;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Server;
using KvDb.TestKit;
using KvDb.TestKit.Faults;

namespace KvDb.Server.Tests;

/// <summary>
/// Slow, failing and lying disk reads (<see cref="ScriptedDiskFaults"/> under the disk tier): a query over blocks
/// read back from disk answers exactly, or fails with UNAVAILABLE / DATA_LOSS / its deadline, never with a wrong
/// answer; blocks still in the CPU tier answer exactly whatever the disk does.
/// </summary>
public sealed class DiskReadFaultTests : IAsyncLifetime, IDisposable
{
    private const string Id = "faulty";
    private const int Tokens = 512;
    private readonly TempDirectory _dir = new("kvdb-readfaults-");
    private readonly ScriptedDiskFaults _faults = new();
    private readonly AppendLedger _ledger = new();
    private KvDbServerHandle? _server;
    private KvDbClient _client = null!;

    public async Task InitializeAsync()
    {
        _server = await KvDbServer.StartAsync(new KvDbServerOptions
        {
            Host = "127.0.0.1",
            Port = 0,
            DataDirectory = _dir.Path,
            CpuBudgetBytes = 64L << 20,
            CalibrateCosts = false,
            DiskReadFaults = _faults,
        });
        _client = new KvDbClient(_server.Address);
        await _client.CreateModelAsync(DeterministicKv.Model());
        await _client.CreateContextAsync(DeterministicKv.ModelName, id: Id);
        _ledger.Created(Id);
        _ledger.Sending(Id, Tokens);
        _ledger.Acknowledged(Id, await DeterministicKv.AppendAsync(_client, Id, 0, Tokens));
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    // xunit calls this after DisposeAsync: the client and the directory outlive the server.
    public void Dispose()
    {
        _client.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task Resident_blocks_answer_exactly_whatever_the_disk_does()
    {
        _faults.Mode = DiskReadFault.Fail;

        LedgerCheck check = await _ledger.VerifyAsync(_client, new Random(1), CancellationToken.None);

        Assert.Equal(0, check.TornReads);
        Assert.Equal(1, check.AttendChecks);
        Assert.Equal(0, _faults.Reads);
    }

    [Fact]
    public async Task A_failing_read_is_unavailable_and_the_block_reads_again_once_the_disk_recovers()
    {
        await _client.EvictAsync(0);
        _faults.Mode = DiskReadFault.Fail;

        RpcException attend = await Assert.ThrowsAsync<RpcException>(() => AttendExactAsync());
        RpcException read = await Assert.ThrowsAsync<RpcException>(() => _client.ReadLayerAsync(Id, 1));

        Assert.Equal(StatusCode.Unavailable, attend.StatusCode);
        Assert.Equal(StatusCode.Unavailable, read.StatusCode);
        _faults.Mode = DiskReadFault.None;
        LedgerCheck check = await _ledger.VerifyAsync(_client, new Random(2), CancellationToken.None);
        Assert.Equal(0, check.TornReads);
        Assert.Equal(1, check.AttendChecks);
        Assert.Equal(0, (await _client.GetStatsAsync()).CorruptRecords);
    }

    [Fact]
    public async Task Wrong_bytes_from_disk_are_data_loss_never_an_answer()
    {
        await _client.EvictAsync(0);
        _faults.Mode = DiskReadFault.Corrupt;

        RpcException attend = await Assert.ThrowsAsync<RpcException>(() => AttendExactAsync());
        RpcException read = await Assert.ThrowsAsync<RpcException>(() => _client.ReadLayerAsync(Id, 0));

        Assert.Equal(StatusCode.DataLoss, attend.StatusCode);
        Assert.Equal(StatusCode.DataLoss, read.StatusCode);
        Assert.True((await _client.GetStatsAsync()).CorruptRecords >= 1);
    }

    [Fact]
    public async Task A_slow_read_stops_at_the_call_deadline()
    {
        await _client.EvictAsync(0);
        _faults.Mode = DiskReadFault.Slow;
        _faults.Delay = TimeSpan.FromSeconds(30);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        RpcException e = await Assert.ThrowsAsync<RpcException>(() => AttendExactAsync(DateTime.UtcNow.AddMilliseconds(500)));

        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the call took {clock.Elapsed}");

        // The server stopped too: the one read under way was cancelled and no other block of the layer was read.
        for (int i = 0; i < 100 && _faults.Cancelled == 0; i++)
        {
            await Task.Delay(50);
        }

        Assert.Equal(1, _faults.Cancelled);
        Assert.Equal(1, _faults.Reads);
        _faults.Mode = DiskReadFault.None;
        LedgerCheck check = await _ledger.VerifyAsync(_client, new Random(3), CancellationToken.None);
        Assert.Equal(0, check.TornReads);
    }

    private async Task<AttentionPartial> AttendExactAsync(DateTime? deadline = null)
    {
        var q = new float[DeterministicKv.QueryHeads * DeterministicKv.HeadDim];
        q.AsSpan().Fill(0.25f);
        AttendRequest request = KvDbClient.BuildAttend(Id, 0, q, 1, DeterministicKv.QueryHeads, DeterministicKv.HeadDim, plan: new Plan { Kind = PlanKind.Exact });
        AttendResponse response = await _client.Attention.AttendAsync(request, deadline: deadline);
        return KvDbClient.ToPartial(response, 1, DeterministicKv.QueryHeads, DeterministicKv.HeadDim);
    }
}

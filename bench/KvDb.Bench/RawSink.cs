using Grpc.AspNetCore.Server.Model;
using Grpc.Core;

namespace KvDb.Bench;

/// <summary>
/// A bench-only gRPC service with one client-streaming method that receives raw byte messages and counts them:
/// the baseline for "what does streaming the same bytes over loopback gRPC cost without KvDb".
/// </summary>
internal sealed class RawSink
{
    public static readonly Method<byte[], byte[]> Method = new(
        MethodType.ClientStreaming,
        "kvdb.bench.RawSink",
        "Push",
        Marshallers.Create(static b => b, static b => b),
        Marshallers.Create(static b => b, static b => b));

    public static async Task<byte[]> PushAsync(RawSink sink, IAsyncStreamReader<byte[]> requests, ServerCallContext context)
    {
        _ = sink;
        long bytes = 0;
        await foreach (byte[] m in requests.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
        {
            bytes += m.Length;
        }

        return BitConverter.GetBytes(bytes);
    }

    /// <summary>Registers <see cref="Method"/> for MapGrpcService&lt;RawSink&gt;.</summary>
    public sealed class Provider : IServiceMethodProvider<RawSink>
    {
        public void OnServiceMethodDiscovery(ServiceMethodProviderContext<RawSink> context) =>
            context.AddClientStreamingMethod(Method, [], PushAsync);
    }
}

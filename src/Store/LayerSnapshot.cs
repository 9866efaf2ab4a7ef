using System.Buffers;
using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// A pinned, consistent view of one context layer for the duration of a query: every block it lists is
/// resident in the CPU tier and keeps its memory and its first rows unchanged until Dispose, whatever appends,
/// rollbacks, deletes or demotions happen meanwhile. With a GPU tier, <see cref="TryOpenDevice"/> also holds the
/// blocks' device mirrors for the same lifetime.
/// </summary>
public sealed class LayerSnapshot : IDisposable
{
    // Rented from the array pools (a query opens one snapshot per request: its block lists are the only part of a
    // request that grows with the context); only the first _count entries are the snapshot's.
    private readonly KvBlock[] _blocks;
    private readonly KvBlockRef[] _views;
    private readonly int _count;
    private readonly BlockManager _manager;
    private readonly Lock _deviceGate = new();
    private DeviceLayer? _device;
    private string? _deviceReason;
    private int _disposed;

    internal LayerSnapshot(ModelSchema model, int layer, KvBlock[] blocks, KvBlockRef[] views, int count, long tokens, BlockManager manager)
    {
        Model = model;
        Layer = layer;
        _blocks = blocks;
        _views = views;
        _count = count;
        Tokens = tokens;
        _manager = manager;
    }

    /// <summary>The context's model.</summary>
    public ModelSchema Model { get; }

    /// <summary>The layer index.</summary>
    public int Layer { get; }

    /// <summary>Tokens in the layer at snapshot time.</summary>
    public long Tokens { get; }

    /// <summary>Blocks in position order, as kernel views.</summary>
    public ReadOnlySpan<KvBlockRef> Blocks => _views.AsSpan(0, _count);

    /// <summary>The layer's mirrors in the GPU tier once <see cref="TryOpenDevice"/> made them, else null.</summary>
    public DeviceLayer? Device => Volatile.Read(ref _device);

    /// <summary>Why the layer is not on the device ("" while it is or before anyone asked).</summary>
    public string DeviceReason => _deviceReason ?? (_manager.Device is null ? "the gpu tier is off" : "");

    /// <summary>
    /// Mirrors every block of the snapshot into the store's GPU tier (promoting those not there yet) and keeps
    /// the mirrors until Dispose. Null when the store has no GPU tier or the layer does not fit (see <see cref="DeviceReason"/>).
    /// </summary>
    public DeviceLayer? TryOpenDevice()
    {
        lock (_deviceGate)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (_device is not null || _deviceReason is not null)
            {
                return _device;
            }

            if (_manager.Device is not IDeviceTier tier)
            {
                _deviceReason = "the gpu tier is off";
                return null;
            }

            DeviceLayer? device = tier.TryMirrorLayer(Model, new ArraySegment<KvBlock>(_blocks, 0, _count), _views.AsSpan(0, _count), Tokens, out string reason);
            _deviceReason = reason;
            Volatile.Write(ref _device, device);
            return device;
        }
    }

    /// <summary>
    /// The content identity of block <paramref name="block"/> when it is full and sealed: its address (which
    /// commits to the model, namespace and every token id up to its end) and its content checksum. False for
    /// the open tail block and for a full block not sealed yet. Index catalogs key shared indexes by these.
    /// </summary>
    public bool TryGetSealed(int block, out BlockAddress address, out ulong checksum)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)_count, nameof(block));
        KvBlock b = _blocks[block];
        if (_views[block].Tokens == Model.BlockSize && b.Address is BlockAddress a)
        {
            address = a;
            checksum = b.Checksum;
            return true;
        }

        address = default;
        checksum = 0;
        return false;
    }

    /// <summary>Copies tokens [start, start+count) out in wire layout [count, num_kv_heads, head_dim] for keys and for values.</summary>
    public void ReadRows(long start, int count, Span<byte> keys, Span<byte> values)
    {
        if (start < 0 || count < 0 || start + count > Tokens)
        {
            throw KvDbException.Invalid($"rows [{start}, {start + count}) are outside the layer's {Tokens} tokens");
        }

        int tokenBytes = Model.NumKvHeads * Model.RowBytes;
        int b = Model.BlockSize;
        int done = 0;
        while (done < count)
        {
            long pos = start + done;
            int blockIndex = (int)(pos / b);
            int first = (int)(pos % b);
            int take = Math.Min(count - done, b - first);
            _blocks[blockIndex].ReadRows(first, take, keys.Slice(done * tokenBytes, take * tokenBytes), values.Slice(done * tokenBytes, take * tokenBytes));
            done += take;
        }
    }

    /// <summary>Releases the pins.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            lock (_deviceGate)
            {
                _device?.Dispose();
            }

            for (int i = 0; i < _count; i++)
            {
                _manager.Unpin(_blocks[i]);
                _blocks[i].Release();
            }

            ArrayPool<KvBlock>.Shared.Return(_blocks, clearArray: true);
            ArrayPool<KvBlockRef>.Shared.Return(_views, clearArray: true);
        }
    }
}

namespace KvDb.Store;

/// <summary>
/// Places blocks in tiers. The CPU tier is the native slab arena with the byte budget; with a spill tier
/// (the disk tier under a data directory), crossing the high watermark demotes the least recently used
/// unpinned full blocks until usage is back under the low watermark, and a pin promotes a demoted block back.
/// Under <see cref="EvictionPolicy.TinyLfu"/> a <see cref="FrequencySketch"/> counts every read (pin) and write (a block
/// filling up) of a block, and demotion takes the least frequently used among the coldest blocks first.
/// Unsafe: spans over arena slots are created only for resident blocks whose reference the caller holds, so
/// the slot cannot be freed or reused meanwhile.
/// </summary>
public sealed unsafe class BlockManager
{
    /// <summary>Fraction of the CPU budget above which demotion starts.</summary>
    public const double HighWatermark = 0.90;

    /// <summary>Fraction of the CPU budget demotion brings usage back to.</summary>
    public const double LowWatermark = 0.75;

    private readonly NativeSlabArena _arena;
    private readonly ISpillTier? _spill;
    private readonly BlockDirectory _directory;
    private readonly Lock _lruGate = new();
    private readonly HashSet<KvBlock> _demotable = [];
    private readonly Lock _demoteGate = new();
    private long _clock;
    private long _residentBlocks;
    private readonly Lock _ownerGate = new();
    private readonly Dictionary<string, long> _residentByOwner = [];
    private long _cpuHits;
    private long _cpuMisses;
    private long _spillBlocks;
    private long _spillBytes;
    private long _spillHits;
    private long _spillMisses;
    private long _corrupt;
    private long _demotions;
    private readonly FrequencySketch? _sketch;
    private readonly Lock _sketchGate = new();

    /// <summary>
    /// Under <see cref="EvictionPolicy.TinyLfu"/>, the most recently used percent of the demotable blocks that demotion
    /// leaves out of its frequency ranking: W-TinyLFU's window (Caffeine's default size), where a block just written or
    /// read back has the chance to be read again before it competes on frequency.
    /// </summary>
    public const int TinyLfuWindowPercent = 1;

    /// <summary>The fewest candidates TinyLFU ranks by frequency (also when the window would leave fewer).</summary>
    public const int TinyLfuMinPool = 16;

    /// <summary>Bytes per sketch word the sketch is sized for: one word (16 counters) per 64 KiB of CPU budget (a 16-token block of an 8-head, d = 128, bf16 model).</summary>
    private const long SketchBytesPerKey = 64 << 10;

    /// <summary>The fewest sketch words (32 KiB): small budgets of small blocks still get a sketch that does not age after a few hundred accesses.</summary>
    private const long SketchMinKeys = 4096;

    internal BlockManager(NativeSlabArena arena, ISpillTier? spill, BlockDirectory directory, EvictionPolicy policy = EvictionPolicy.Lru)
    {
        _arena = arena;
        _spill = spill;
        _directory = directory;
        Policy = policy;
        if (policy == EvictionPolicy.TinyLfu)
        {
            _sketch = new FrequencySketch(Math.Max(SketchMinKeys, arena.BudgetBytes / SketchBytesPerKey));
        }
    }

    /// <summary>How demotion picks its blocks.</summary>
    public EvictionPolicy Policy { get; }

    /// <summary>The estimated access frequency of a full block (0 to 15) under TinyLFU; 0 under LRU or for a block with no address.</summary>
    public int EstimatedFrequency(KvBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        if (_sketch is null || block.Address is not BlockAddress address)
        {
            return 0;
        }

        lock (_sketchGate)
        {
            return _sketch.Frequency(SketchKey(address));
        }
    }

    /// <summary>Times the TinyLFU sketch halved its counters (aging); 0 under LRU.</summary>
    public long SketchHalvings
    {
        get
        {
            if (_sketch is null)
            {
                return 0;
            }

            lock (_sketchGate)
            {
                return _sketch.Halvings;
            }
        }
    }

    /// <summary>The sketch key of a block address: the chain hash folded to 64 bits, mixed with the layer.</summary>
    private static ulong SketchKey(BlockAddress address) =>
        (ulong)address.Chain ^ (ulong)(address.Chain >> 64) ^ ((ulong)(uint)address.Layer * 0x9E3779B97F4A7C15UL);

    /// <summary>Counts one access of a full block in the TinyLFU sketch (no-op under LRU).</summary>
    private void RecordAccess(KvBlock block)
    {
        if (_sketch is not null && block.Address is BlockAddress address)
        {
            lock (_sketchGate)
            {
                _sketch.Increment(SketchKey(address));
            }
        }
    }

    /// <summary>Counts one access of each block in the TinyLFU sketch, under one lock (no-op under LRU).</summary>
    private void RecordAccesses(ReadOnlySpan<KvBlock> blocks)
    {
        if (_sketch is null || blocks.IsEmpty)
        {
            return;
        }

        lock (_sketchGate)
        {
            foreach (KvBlock block in blocks)
            {
                if (block.Address is BlockAddress address)
                {
                    _sketch.Increment(SketchKey(address));
                }
            }
        }
    }

    /// <summary>True when blocks can be demoted to a lower tier.</summary>
    public bool CanSpill => _spill is not null;

    /// <summary>Full blocks found corrupt when read back from a lower tier.</summary>
    public long CorruptBlocks => Interlocked.Read(ref _corrupt);

    /// <summary>The GPU tier above the CPU tier, if the store has one: it mirrors blocks of queried layers and drops the mirror of a block that is freed or demoted.</summary>
    public IDeviceTier? Device { get; internal set; }

    /// <summary>Blocks demoted from the CPU tier since start.</summary>
    public long Demotions => Interlocked.Read(ref _demotions);

    /// <summary>Allocates an empty resident block with one reference; demotes cold blocks first when the budget is tight.</summary>
    public KvBlock Allocate(ModelSchema model, int layer, string owner = "")
    {
        ArgumentNullException.ThrowIfNull(model);
        nint memory = AllocateSlot(model.BlockBytes);
        var block = new KvBlock(this, model, layer, memory) { Owner = owner };
        CountResident(block, +1);
        return block;
    }

    /// <summary>The CPU tier's budget in bytes.</summary>
    public long CpuBudgetBytes => _arena.BudgetBytes;

    /// <summary>CPU-tier bytes of <paramref name="owner"/>'s blocks (<see cref="BlockOwner"/>), pinned or not.</summary>
    public long ResidentBytes(string owner)
    {
        lock (_ownerGate)
        {
            return _residentByOwner.GetValueOrDefault(owner);
        }
    }

    /// <summary>Counts a block entering (+1) or leaving (−1) the CPU tier, in total and for its owner.</summary>
    private void CountResident(KvBlock block, int sign)
    {
        Interlocked.Add(ref _residentBlocks, sign);
        lock (_ownerGate)
        {
            long bytes = _residentByOwner.GetValueOrDefault(block.Owner) + (sign * block.Model.BlockBytes);
            if (bytes == 0)
            {
                _residentByOwner.Remove(block.Owner);
            }
            else
            {
                _residentByOwner[block.Owner] = bytes;
            }
        }
    }

    /// <summary>Called when a block becomes full (and addressed): from now on it may be demoted.</summary>
    internal void MarkFull(KvBlock block)
    {
        RecordAccess(block);
        if (_spill is not null)
        {
            // Writing counts as a use, so a block just appended is not the first to go.
            block.LastUse = Interlocked.Increment(ref _clock);
            lock (_lruGate)
            {
                _demotable.Add(block);
            }

            CapOwner(block.Owner);
        }
    }

    /// <summary>Registers a block that exists only in the spill tier (recovered from a checkpoint).</summary>
    internal KvBlock AdoptSpilled(ModelSchema model, int layer, BlockAddress address, ulong checksum, long handle, string owner = "")
    {
        var block = new KvBlock(this, model, layer, 0) { Address = address, Checksum = checksum, DiskAddress = handle, Owner = owner };
        block.MarkFullCount();
        _spill?.Adopt(model.BlockBytes);
        Interlocked.Increment(ref _spillBlocks);
        Interlocked.Add(ref _spillBytes, model.BlockBytes);
        return block;
    }

    /// <summary>Makes <paramref name="block"/> resident (reading it back from disk if needed) and pins it there.</summary>
    public void Pin(KvBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        PinCore(block);
        RecordAccess(block);
    }

    private void PinCore(KvBlock block, CancellationToken cancellationToken = default)
    {
        lock (block.Gate)
        {
            if (block.Corrupt)
            {
                throw CorruptError(block);
            }

            if (block.IsResident)
            {
                Interlocked.Increment(ref _cpuHits);
            }
            else
            {
                Interlocked.Increment(ref _cpuMisses);
                Promote(block, cancellationToken);
                if (block.Address is BlockAddress promoted)
                {
                    _directory.Events.Emit(Events.KvEventKind.Promoted, block.Model.Name, promoted.ToString(), block.Model.BlockSize, "cpu");
                }
            }

            block.AddPin();
            block.LastUse = Interlocked.Increment(ref _clock);
        }
    }

    /// <summary>
    /// Pins a layer's blocks in order (as <see cref="Pin"/> each, with one clock tick and one hit count for the
    /// resident ones, which a 128K-token layer of 2048 blocks notices). <paramref name="pinned"/> counts the
    /// blocks pinned so far, also when it throws: the caller unpins those.
    /// </summary>
    internal void PinAll(ReadOnlySpan<KvBlock> blocks, ref int pinned, CancellationToken cancellationToken = default)
    {
        long now = Interlocked.Increment(ref _clock);
        long hits = 0;
        try
        {
            for (; pinned < blocks.Length; pinned++)
            {
                KvBlock block = blocks[pinned];
                lock (block.Gate)
                {
                    if (block.IsResident && !block.Corrupt)
                    {
                        block.AddPin();
                        block.LastUse = now;
                        hits++;
                        continue;
                    }
                }

                // Only disk reads take long; a cancelled or expired call stops before the next one.
                cancellationToken.ThrowIfCancellationRequested();
                PinCore(block, cancellationToken);
            }
        }
        finally
        {
            Interlocked.Add(ref _cpuHits, hits);
            RecordAccesses(blocks[..pinned]);
        }
    }

    /// <summary>Undoes one <see cref="Pin"/>.</summary>
    public void Unpin(KvBlock block)
    {
        ArgumentNullException.ThrowIfNull(block);
        lock (block.Gate)
        {
            block.RemovePin();
        }
    }

    /// <summary>
    /// The CPU-tier bytes guaranteed to an owner (<see cref="BlockOwner"/>); null or 0 = no guarantee. Demotion takes
    /// the coldest blocks of owners above their share first (so one tenant filling the tier pushes out its own cold
    /// blocks, not another's hot ones below that one's share), and only then, least recently used first, the rest.
    /// </summary>
    public Func<string, long>? ResidentShare { get; set; }

    /// <summary>
    /// Demotes least recently used unpinned full blocks to the spill tier until the CPU tier uses at most
    /// <paramref name="targetBytes"/>. Returns the blocks and bytes demoted. No-op without a spill tier.
    /// </summary>
    public (long Blocks, long Bytes) Demote(long targetBytes, bool wait = true)
    {
        if (_spill is null)
        {
            return (0, 0);
        }

        if (!_demoteGate.TryEnter())
        {
            if (!wait)
            {
                return (0, 0);
            }

            _demoteGate.Enter();
        }

        try
        {
            long need = _arena.UsedBytes - targetBytes;
            if (need <= 0)
            {
                return (0, 0);
            }

            KvBlock[] candidates;
            lock (_lruGate)
            {
                candidates = new KvBlock[_demotable.Count];
                _demotable.CopyTo(candidates);
            }

            var ages = new long[candidates.Length];
            for (int i = 0; i < candidates.Length; i++)
            {
                ages[i] = candidates[i].LastUse;
            }

            Array.Sort(ages, candidates);
            if (_sketch is not null)
            {
                LeastFrequentFirst(candidates, need);
            }

            if (ResidentShare is { } share)
            {
                candidates = OverShareFirst(candidates, share);
            }

            return DemoteInOrder(candidates, need);
        }
        finally
        {
            _demoteGate.Exit();
        }
    }

    /// <summary>
    /// Demotes <paramref name="candidates"/> in order (skipping pinned, partial and busy ones) until <paramref name="need"/>
    /// bytes are planned. The caller holds the demotion gate.
    /// </summary>
    private (long Blocks, long Bytes) DemoteInOrder(KvBlock[] candidates, long need)
    {
        ISpillTier spill = _spill ?? throw new InvalidOperationException("demotion needs a spill tier");
        var chosen = new List<KvBlock>();
        long planned = 0;
        foreach (KvBlock b in candidates)
        {
            if (planned >= need)
            {
                break;
            }

            if (!b.TryAddRef())
            {
                continue;
            }

            bool keep = false;
            if (b.Gate.TryEnter())
            {
                try
                {
                    if (b.Pins == 0 && b.IsResident && b.Address is BlockAddress address)
                    {
                        // A block without a disk copy stays resident when the disk is full: its slot is not freed
                        // for a copy that could not be made durable.
                        if (b.DiskAddress < 0 && spill.HasRoom(b.Model.BlockBytes))
                        {
                            b.DiskAddress = spill.Write(address, b.Checksum, b.Bytes);
                            Interlocked.Increment(ref _spillBlocks);
                            Interlocked.Add(ref _spillBytes, b.Model.BlockBytes);
                        }

                        keep = b.DiskAddress >= 0;
                        planned += keep ? b.Model.BlockBytes : 0;
                    }
                }
                finally
                {
                    b.Gate.Exit();
                }
            }

            if (keep)
            {
                chosen.Add(b);
            }
            else
            {
                b.Release();
            }
        }

        // The copies must be readable before the CPU slots go away.
        spill.Flush();
        long blocks = 0;
        long bytes = 0;
        foreach (KvBlock b in chosen)
        {
            lock (b.Gate)
            {
                if (b.Pins == 0 && b.IsResident)
                {
                    _arena.Free(b.Memory, b.Model.BlockBytes);
                    b.SetMemory(0);
                    Device?.Drop(b);
                    CountResident(b, -1);
                    blocks++;
                    if (b.Address is BlockAddress demoted)
                    {
                        _directory.Events.Emit(Events.KvEventKind.Demoted, b.Model.Name, demoted.ToString(), b.Model.BlockSize, "disk");
                    }
                    bytes += b.Model.BlockBytes;
                    lock (_lruGate)
                    {
                        _demotable.Remove(b);
                    }
                }
            }

            b.Release();
        }

        Interlocked.Add(ref _demotions, blocks);
        return (blocks, bytes);
    }

    /// <summary>
    /// The hard side of a CPU-tier share: when <paramref name="owner"/> holds more than its share
    /// (<see cref="ResidentShare"/>), its own coldest unpinned full blocks go to disk until it holds at most the share,
    /// whether or not the tier is under pressure. Skipped when another demotion runs (the owner's next full block checks
    /// again) and without a spill tier (a memory-only server refuses the append at the quota instead).
    /// </summary>
    private void CapOwner(string owner)
    {
        if (_spill is null || owner.Length == 0 || ResidentShare is not { } share)
        {
            return;
        }

        long cap = share(owner);
        if (cap <= 0)
        {
            return;
        }

        long over = ResidentBytes(owner) - cap;
        if (over <= 0 || !_demoteGate.TryEnter())
        {
            return;
        }

        // Down to 7/8 of the share, not to the share: each pass scans the demotable list, so a tenant appending at its
        // cap pays for one pass per eighth of its share instead of one per block.
        over += cap / 8;

        try
        {
            var own = new List<KvBlock>();
            lock (_lruGate)
            {
                foreach (KvBlock b in _demotable)
                {
                    if (b.Owner == owner)
                    {
                        own.Add(b);
                    }
                }
            }

            KvBlock[] candidates = [.. own];
            var ages = new long[candidates.Length];
            for (int i = 0; i < candidates.Length; i++)
            {
                ages[i] = candidates[i].LastUse;
            }

            Array.Sort(ages, candidates);
            if (_sketch is not null)
            {
                LeastFrequentFirst(candidates, over);
            }

            DemoteInOrder(candidates, over);
        }
        finally
        {
            _demoteGate.Exit();
        }
    }

    /// <summary>
    /// TinyLFU's choice, in place: every candidate but the most recently used <see cref="TinyLfuWindowPercent"/> percent
    /// (the window; still ranked when needed to cover <paramref name="need"/> bytes, and at least
    /// <see cref="TinyLfuMinPool"/> are ranked) is reordered least frequently used first (ties: least recently used
    /// first); the window keeps its order behind them.
    /// </summary>
    private void LeastFrequentFirst(KvBlock[] coldestFirst, long need)
    {
        int pool = Math.Min(coldestFirst.Length, Math.Max(TinyLfuMinPool, coldestFirst.Length - (coldestFirst.Length * TinyLfuWindowPercent / 100)));
        long bytes = 0;
        for (int i = 0; i < pool; i++)
        {
            bytes += coldestFirst[i].Model.BlockBytes;
        }

        while (pool < coldestFirst.Length && bytes < need)
        {
            bytes += coldestFirst[pool].Model.BlockBytes;
            pool++;
        }

        // Frequency in the high half, LRU rank in the low half: one sort, stable within a frequency.
        var keys = new long[pool];
        lock (_sketchGate)
        {
            for (int i = 0; i < pool; i++)
            {
                int frequency = coldestFirst[i].Address is BlockAddress address ? _sketch!.Frequency(SketchKey(address)) : 0;
                keys[i] = ((long)frequency << 32) | (uint)i;
            }
        }

        Array.Sort(keys, coldestFirst, 0, pool);
    }

    /// <summary>
    /// <paramref name="coldestFirst"/> reordered: blocks of owners whose resident bytes (pinned ones included) exceed
    /// their share, coldest first, as long as demoting them keeps the owner at or above its share; then the others in
    /// their order.
    /// </summary>
    private KvBlock[] OverShareFirst(KvBlock[] coldestFirst, Func<string, long> share)
    {
        Dictionary<string, long> resident;
        lock (_ownerGate)
        {
            resident = new Dictionary<string, long>(_residentByOwner);
        }

        foreach (KvBlock b in coldestFirst)
        {
            // A candidate counted nowhere (residency changed since the snapshot) must still have an entry.
            resident.TryAdd(b.Owner, b.Model.BlockBytes);
        }

        var guaranteed = new Dictionary<string, long>(resident.Count);
        foreach (string owner in resident.Keys)
        {
            guaranteed[owner] = owner.Length == 0 ? 0 : Math.Max(0, share(owner));
        }

        var ordered = new KvBlock[coldestFirst.Length];
        var protectedBlocks = new List<KvBlock>();
        int next = 0;
        foreach (KvBlock b in coldestFirst)
        {
            long left = resident[b.Owner];
            if (left - b.Model.BlockBytes >= guaranteed[b.Owner])
            {
                ordered[next++] = b;
                resident[b.Owner] = left - b.Model.BlockBytes;
            }
            else
            {
                protectedBlocks.Add(b);
            }
        }

        protectedBlocks.CopyTo(ordered, next);
        return ordered;
    }

    /// <summary>Writes every listed full block that has no spill copy yet and makes the copies durable (for checkpoints). The caller holds a reference to each.</summary>
    internal void EnsureSpilled(IReadOnlyList<KvBlock> blocks)
    {
        if (_spill is null)
        {
            return;
        }

        long unwritten = 0;
        foreach (KvBlock b in blocks)
        {
            unwritten += b.DiskAddress < 0 ? b.Model.BlockBytes : 0;
        }

        if (!_spill.HasRoom(unwritten))
        {
            throw _spill.Full(unwritten);
        }

        foreach (KvBlock b in blocks)
        {
            lock (b.Gate)
            {
                if (b.DiskAddress < 0 && b.IsResident && b.Address is BlockAddress address)
                {
                    b.DiskAddress = _spill.Write(address, b.Checksum, b.Bytes);
                    Interlocked.Increment(ref _spillBlocks);
                    Interlocked.Add(ref _spillBytes, b.Model.BlockBytes);
                }
            }
        }

        _spill.Flush();
    }

    /// <summary>
    /// Compaction's copy step: every listed block whose spill copy lies in [<paramref name="from"/>, <paramref name="below"/>)
    /// gets a new copy at the spill tier's tail (from memory when resident, else read back in log order and checked) and
    /// then refers to it; the old copy becomes garbage. A block's handle changes only after its new copy is durable, under
    /// the block's gate, so a concurrent read-back sees the old or the new copy, both readable until the caller truncates. A copy that
    /// fails its checksum marks the block corrupt (it is never served) and keeps its old handle. The caller holds a reference
    /// to each block and keeps other writers of disk handles (checkpoints) out. Returns blocks moved, bytes moved, corrupt.
    /// </summary>
    internal (long Blocks, long Bytes, long Corrupt) Relocate(IReadOnlyList<KvBlock> blocks, long from, long below, long batchBytes)
    {
        ISpillTier spill = _spill ?? throw new InvalidOperationException("compaction needs a spill tier");

        // In log order, so the copies not in memory are read back sequentially.
        var ordered = new List<KvBlock>(blocks.Count);
        foreach (KvBlock b in blocks)
        {
            long handle = b.DiskAddress;
            if (handle >= from && handle < below)
            {
                ordered.Add(b);
            }
        }

        ordered.Sort(static (x, y) => x.DiskAddress.CompareTo(y.DiskAddress));
        var pending = new List<(KvBlock Block, long Old, long New)>();
        long moved = 0, bytes = 0, corrupt = 0, batched = 0;
        byte[]? buffer = null;
        try
        {
            foreach (KvBlock b in ordered)
            {
                long old;
                BlockAddress address;
                bool copied = false;
                int blockBytes = (int)b.Model.BlockBytes;
                lock (b.Gate)
                {
                    old = b.DiskAddress;
                    if (old < from || old >= below || b.Corrupt || b.Address is not BlockAddress a)
                    {
                        continue;
                    }

                    address = a;
                    if (b.IsResident)
                    {
                        // A memory copy under the gate (demotion frees the slot under it); no disk read.
                        pending.Add((b, old, spill.Write(address, b.Checksum, b.Bytes)));
                        batched += blockBytes;
                        copied = true;
                    }
                }

                if (!copied)
                {
                    // Not resident: the old copy stays readable until the caller truncates, so it is read without the
                    // gate and a reader promoting the block meanwhile is not held up by this disk read.
                    if (buffer is null || buffer.Length < blockBytes)
                    {
                        if (buffer is not null)
                        {
                            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                        }

                        buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(blockBytes);
                    }

                    bool read;
                    try
                    {
                        read = spill.TryRead(old, address, b.Checksum, buffer.AsSpan(0, blockBytes));
                    }
                    catch (IOException e)
                    {
                        // Nothing is dropped before the checkpoint that ends a compaction: stopping here keeps every
                        // block at its old, still present record (copies made so far are dead records).
                        throw new KvDbException(KvDbErrorCode.Unavailable, $"compaction stopped: block {address} could not be read from the disk tier ({e.Message}); nothing was dropped, try again once the disk reads");
                    }

                    if (!read)
                    {
                        lock (b.Gate)
                        {
                            if (b.DiskAddress == old && !b.IsResident && !b.Corrupt)
                            {
                                b.Corrupt = true;
                                Interlocked.Increment(ref _corrupt);
                                Interlocked.Increment(ref _spillMisses);
                                corrupt++;
                            }
                        }

                        continue;
                    }

                    pending.Add((b, old, spill.Write(address, b.Checksum, buffer.AsSpan(0, blockBytes))));
                    batched += blockBytes;
                }

                if (batched >= batchBytes)
                {
                    (long n, long m) = SwitchCopies(spill, pending);
                    moved += n;
                    bytes += m;
                    batched = 0;
                }
            }

            (long n2, long m2) = SwitchCopies(spill, pending);
            return (moved + n2, bytes + m2, corrupt);
        }
        finally
        {
            if (buffer is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>Makes the new copies durable, then points each block at its new copy; the old copies become garbage.</summary>
    private static (long Blocks, long Bytes) SwitchCopies(ISpillTier spill, List<(KvBlock Block, long Old, long New)> pending)
    {
        if (pending.Count == 0)
        {
            return (0, 0);
        }

        spill.Flush();
        long bytes = 0;
        foreach ((KvBlock b, long old, long copy) in pending)
        {
            lock (b.Gate)
            {
                // The caller's reference keeps the block from being freed, and only a block without a copy gets one
                // written, so the handle is still the old one; checked anyway, since a wrong handle would lose the block.
                if (b.DiskAddress == old)
                {
                    b.DiskAddress = copy;
                    spill.Forget(old, b.Model.BlockBytes);
                }
                else
                {
                    spill.Forget(copy, b.Model.BlockBytes);
                }
            }

            bytes += b.Model.BlockBytes;
        }

        int n = pending.Count;
        pending.Clear();
        return (n, bytes);
    }

    /// <summary>
    /// Reads the disk copy of a non-resident block and checks it without promoting it (the start-up scrub);
    /// false when it failed its checksum (the block is then marked corrupt and never served). The caller holds a reference.
    /// </summary>
    internal bool Verify(KvBlock block)
    {
        if (_spill is null)
        {
            return true;
        }

        lock (block.Gate)
        {
            if (block.IsResident || block.Corrupt || block.DiskAddress < 0 || block.Address is not BlockAddress address)
            {
                return !block.Corrupt;
            }

            byte[] buffer = System.Buffers.ArrayPool<byte>.Shared.Rent((int)block.Model.BlockBytes);
            try
            {
                if (_spill.TryRead(block.DiskAddress, address, block.Checksum, buffer.AsSpan(0, (int)block.Model.BlockBytes)))
                {
                    return true;
                }
            }
            catch (IOException)
            {
                // The device failed, not the copy: left unverified (a read will try again).
                return true;
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }

            block.Corrupt = true;
            Interlocked.Increment(ref _corrupt);
            Interlocked.Increment(ref _spillMisses);
            return false;
        }
    }

    /// <summary>Per-tier counters: the CPU tier, then the spill tier if any, then the GPU tier if any.</summary>
    public IReadOnlyList<TierStats> GetTierStats()
    {
        var tiers = new List<TierStats>(3)
        {
            new("cpu", _arena.UsedBytes, Interlocked.Read(ref _residentBlocks), Interlocked.Read(ref _cpuHits), Interlocked.Read(ref _cpuMisses)),
        };
        if (_spill is not null)
        {
            tiers.Add(new TierStats(_spill.Name, Interlocked.Read(ref _spillBytes), Interlocked.Read(ref _spillBlocks), Interlocked.Read(ref _spillHits), Interlocked.Read(ref _spillMisses)));
        }

        if (Device is IDeviceTier device)
        {
            tiers.Add(device.GetStats());
        }

        return tiers;
    }

    /// <summary>Called by <see cref="KvBlock.Release"/> when the last reference is gone.</summary>
    internal void OnFreed(KvBlock block)
    {
        _directory.Unpublish(block);
        Device?.Drop(block);
        lock (block.Gate)
        {
            if (block.IsResident)
            {
                _arena.Free(block.Memory, block.Model.BlockBytes);
                block.SetMemory(0);
                CountResident(block, -1);
            }

            if (block.DiskAddress >= 0)
            {
                _spill?.Forget(block.DiskAddress, block.Model.BlockBytes);
                block.DiskAddress = -1;
                Interlocked.Decrement(ref _spillBlocks);
                Interlocked.Add(ref _spillBytes, -block.Model.BlockBytes);
            }
        }

        if (_spill is not null)
        {
            lock (_lruGate)
            {
                _demotable.Remove(block);
            }
        }
    }

    private nint AllocateSlot(long bytes)
    {
        nint memory = _arena.TryAllocate(bytes);
        if (memory == 0 && _spill is not null)
        {
            Demote((long)(_arena.BudgetBytes * LowWatermark) - bytes);
            memory = _arena.TryAllocate(bytes);
        }

        if (memory == 0 && _spill is not null && !_spill.HasRoom(bytes))
        {
            throw _spill.Full(bytes);
        }

        if (memory == 0)
        {
            throw new KvDbException(
                KvDbErrorCode.ResourceExhausted,
                _spill is null
                    ? $"the CPU tier budget of {_arena.BudgetBytes} bytes is full ({_arena.UsedBytes} in use); delete contexts or start the server with a larger --cpu-budget (or a --data directory so cold blocks can spill to disk)"
                    : $"the CPU tier budget of {_arena.BudgetBytes} bytes is full of pinned or partial blocks ({_arena.UsedBytes} in use); read fewer layers at once or start the server with a larger --cpu-budget");
        }

        if (_spill is not null && _arena.UsedBytes > _arena.BudgetBytes * HighWatermark)
        {
            Demote((long)(_arena.BudgetBytes * LowWatermark), wait: false);
        }

        return memory;
    }

    /// <summary>Reads a demoted block back into a new CPU slot; the caller holds the block's gate.</summary>
    private void Promote(KvBlock block, CancellationToken cancellationToken)
    {
        if (_spill is null || block.DiskAddress < 0 || block.Address is not BlockAddress address)
        {
            throw new KvDbException(KvDbErrorCode.Internal, "a non-resident block has no disk copy");
        }

        long bytes = block.Model.BlockBytes;
        nint memory = AllocateSlot(bytes);
        bool read;
        try
        {
            read = _spill.TryRead(block.DiskAddress, address, block.Checksum, new Span<byte>((void*)memory, (int)bytes), cancellationToken);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // Neither says the copy is bad: the block stays as it was (not corrupt) and a later read may succeed.
            _arena.Free(memory, bytes);
            Interlocked.Increment(ref _spillMisses);
            if (e is IOException io)
            {
                throw new KvDbException(
                    KvDbErrorCode.Unavailable,
                    $"block {block.Address} (layer {block.Layer}) could not be read from the disk tier ({io.Message}); it is not marked corrupt and the call can be retried; check the data directory's disk");
            }

            throw;
        }

        if (!read)
        {
            _arena.Free(memory, bytes);
            block.Corrupt = true;
            Interlocked.Increment(ref _corrupt);
            Interlocked.Increment(ref _spillMisses);
            throw CorruptError(block);
        }

        Interlocked.Increment(ref _spillHits);
        block.SetMemory(memory);
        CountResident(block, +1);
        lock (_lruGate)
        {
            _demotable.Add(block);
        }
    }

    private static KvDbException CorruptError(KvBlock block) => new(
        KvDbErrorCode.DataLoss,
        $"block {block.Address} (layer {block.Layer}) failed its checksum on disk and is not served; delete the context and append its KV again");
}

using System.Runtime.InteropServices;
using KvDb.Kernels;
using KvDb.Kernels.Cuda;
using KvDb.QueryEngine;
using KvDb.QueryEngine.Execution;
using KvDb.QueryEngine.Explain;
using KvDb.Store;
using KvDb.Workload;

namespace KvDb.TestKit;

/// <summary>One check of the store's GPU tier: errors against the f64 reference and the CPU kernel, the tier that ran, pass.</summary>
public sealed record StoreCheck(string Name, string Tier, double RelL2Reference, double MaxLseError, double RelL2Cpu, bool Passed, string Detail)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name}: tier {Tier}, relL2 ref {RelL2Reference:E2}, lse {MaxLseError:E2}, relL2 cpu {RelL2Cpu:E2}, {(Passed ? "pass" : "FAIL")} {Detail}";
}

/// <summary>
/// The store with a GPU tier smaller than its data, driven through <see cref="AttentionExecutor"/>: Llama-3-8B
/// layer geometry (32 query heads, 8 KV heads, d = 128, bf16, 64-token blocks), contexts whose layers take 16
/// and 32 blocks against a 24-slot GPU budget, so queries promote, evict, fall back to the CPU, top up a growing
/// tail, lose mirrors to CPU demotion and context deletion, and run concurrently. Every answer must equal the f64
/// reference (relative L2 ≤ 1e-5, LSE abs ≤ 1e-4) and the CPU kernel on the same snapshot. Shared by
/// tests/KvDb.QueryEngine.Tests (skipped without CUDA) and the GPU runner (device machine, no .NET SDK).
/// </summary>
public static class StoreGpuChecks
{
    /// <summary>Relative L2 bound of the output.</summary>
    public const double RelTolerance = 1e-5;

    /// <summary>Absolute bound of the LSE.</summary>
    public const double LseTolerance = 1e-4;

    private const int Hq = 32;
    private const int Hkv = 8;
    private const int D = 128;
    private const int Block = 64;
    private const int SlotsInBudget = 24;

    /// <summary>Runs every check (needs CUDA); a scratch data directory is made and deleted under the temp folder.</summary>
    public static IReadOnlyList<StoreCheck> Run()
    {
        var results = new List<StoreCheck>();
        string dir = Path.Combine(Path.GetTempPath(), "kvdb-gpu-tier-" + Guid.NewGuid().ToString("N"));
        var model = new ModelSchema("llama-gpu-tier", 1, Hq, Hkv, D, KvDType.BF16, Block, 0);
        long budget = SlotsInBudget * ModelSchema.Normalize(model).BlockBytes;
        try
        {
            using var store = new KvStore(new StoreOptions
            {
                CpuBudgetBytes = 256L << 20,
                GpuBudgetBytes = budget,
                DataDirectory = dir,
                MaintenanceInterval = TimeSpan.Zero,
            });
            CudaDeviceTier tier = store.DeviceTier ?? throw new InvalidOperationException(store.GpuTierStatus);
            store.CreateModel(model);
            using var executor = new AttentionExecutor(store);
            var a = new Layer(store, "a", 1, 1000);   // 16 blocks, tail of 40 rows
            var b = new Layer(store, "b", 2, 1000);   // 16 blocks
            var c = new Layer(store, "c", 3, 2000);   // 32 blocks: more than the budget holds

            results.Add(a.Check(executor, "a_first_query_promotes", 1, 0, 0, "gpu", r => r.Promoted == 16));
            results.Add(a.Check(executor, "a_again_all_hits_exclude", 2, 100, 300, "gpu", r => r.Promoted == 0));
            long evictionsBefore = tier.Evictions;
            results.Add(b.Check(executor, "b_evicts_lru_mirrors_of_a", 1, 0, 0, "gpu", r => r.Promoted == 16 && tier.Evictions - evictionsBefore >= 8));
            results.Add(a.Check(executor, "a_back_after_eviction", 4, 990, 1200, "gpu", r => r.Promoted >= 8));
            results.Add(c.Check(executor, "c_larger_than_budget_runs_on_cpu", 1, 0, 0, "cpu", r => r.DeviceReason.Length > 0));
            a.Append(150);   // the 40-row tail fills up and a new partial block follows
            results.Add(a.Check(executor, "a_grown_tail_topped_up", 1, 0, 0, "gpu", r => r.Promoted == 2));

            long dropsBefore = tier.Drops;
            int mirroredBefore = tier.MirroredBlocks;
            (long demoted, _) = store.Evict(0);
            // Every mirrored block is full except the partial tails of a and b (if b's is still mirrored), which stay in the CPU tier and keep their mirrors.
            int after = tier.MirroredBlocks;
            bool dropped = demoted > 0 && tier.Drops - dropsBefore == mirroredBefore - after && after is 1 or 2;
            results.Add(new StoreCheck("cpu_demotion_drops_mirrors", "-", 0, 0, 0, dropped, $"demoted {demoted}, drops {tier.Drops - dropsBefore}, mirrored {mirroredBefore} -> {tier.MirroredBlocks}"));
            results.Add(a.Check(executor, "a_after_demotion_disk_to_cpu_to_gpu", 1, 0, 0, "gpu", r => r.Promoted == 17));

            // Concurrent readers of a and b: each needs 16+ of the 24 slots, so they take turns evicting each other's mirrors.
            int concurrentFailures = 0;
            double worstRel = 0;
            double worstLse = 0;
            Parallel.For(0, 24, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                StoreCheck r = (i % 2 == 0 ? a : b).Check(executor, "concurrent", 1 + (i % 3), 0, 0, null, _ => true, seed: (ulong)(100 + i));
                lock (results)
                {
                    concurrentFailures += r.Passed ? 0 : 1;
                    worstRel = Math.Max(worstRel, r.RelL2Reference);
                    worstLse = Math.Max(worstLse, r.MaxLseError);
                }
            });
            results.Add(new StoreCheck("concurrent_readers_under_eviction", "mixed", worstRel, worstLse, 0, concurrentFailures == 0, $"{concurrentFailures} of 24 failed"));

            dropsBefore = tier.Drops;
            store.DeleteContext("b");
            TierStats gpu = store.GetStats().Tiers[^1];
            bool fits = gpu.Name == "gpu" && gpu.Bytes <= budget && gpu.Blocks <= SlotsInBudget && tier.ReservedBytes <= budget;
            results.Add(new StoreCheck("delete_drops_mirrors_and_budget_holds", "-", 0, 0, 0, fits && tier.Drops >= dropsBefore,
                $"gpu tier {gpu.Bytes} bytes / {gpu.Blocks} blocks (hits {gpu.Hits}, misses {gpu.Misses}), reserved {tier.ReservedBytes} of {budget}, evictions {tier.Evictions}, drops {tier.Drops}"));
        }
        finally
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        }

        return results;
    }

    /// <summary>One context's single layer with its K/V kept for the f64 reference.</summary>
    private sealed class Layer
    {
        private readonly KvStore _store;
        private readonly string _id;
        private readonly SyntheticWorkload _workload;
        private readonly List<float> _keys = [];
        private readonly List<float> _values = [];
        private long _tokens;

        public Layer(KvStore store, string id, ulong seed, int tokens)
        {
            _store = store;
            _id = id;
            _workload = new SyntheticWorkload(new SyntheticWorkloadOptions { Tokens = 4096, NumKvHeads = Hkv, NumQueryHeads = Hq, HeadDim = D, Seed = seed });
            store.CreateContext("llama-gpu-tier", "", id, []);
            Append(tokens);
        }

        public void Append(int count)
        {
            var ids = new int[count];
            _workload.FillTokenIds(_tokens, ids);
            byte[] kb = _workload.KeyBytes(KvDType.BF16, _tokens, count);
            byte[] vb = _workload.ValueBytes(KvDType.BF16, _tokens, count);
            using (IAppendTransaction tx = _store.BeginAppend(_id))
            {
                tx.Append(0, ids, kb, vb);
                tx.Commit();
            }

            _keys.AddRange(ElementConversion.ToSingle(KvDType.BF16, kb));
            _values.AddRange(ElementConversion.ToSingle(KvDType.BF16, vb));
            _tokens += count;
        }

        /// <summary>Runs an exact query through the executor and checks it; <paramref name="expectTier"/> null = either tier.</summary>
        public StoreCheck Check(AttentionExecutor executor, string name, int numQueries, long xs, long xe, string? expectTier, Func<Outcome, bool> extra, ulong seed = 7)
        {
            float[] q = _workload.Queries(numQueries, seed);
            AttentionResult r = executor.Attend(new AttentionQuery(_id, 0, q, numQueries, xs, xe, new PlanRequest(PlanKind.Exact), ReturnSelection: false));

            // The CPU kernel over a fresh snapshot (which also tells how many blocks a GPU run had to promote: none now).
            var cpu = new float[q.Length];
            var cpuLse = new float[numQueries * Hq];
            using (LayerSnapshot snap = _store.OpenLayer(_id, 0))
            {
                ExactAttentionKernel.Run(snap.Model.Geometry, snap.Blocks, q, numQueries, xs, xe, cpu, cpuLse);
            }

            (double[] o, double[] lse) = ReferenceAttention.Compute(CollectionsMarshal.AsSpan(_keys), CollectionsMarshal.AsSpan(_values), q, numQueries, Hq, Hkv, D, 1.0 / Math.Sqrt(D), xs, xe);
            double rel = ReferenceAttention.RelativeL2(r.Output, o);
            double lseErr = ReferenceAttention.MaxAbsError(r.Lse, lse);
            double relCpu = VectorErrors.RelativeL2(r.Output, cpu);
            int promoted = r.Stats.Explain.Site == ExecutionSite.Gpu ? r.Stats.Explain.DevicePromoted : -1;
            var outcome = new Outcome(r.Stats.Tier, promoted, r.Stats.Explain.DeviceReason);
            bool tierOk = expectTier is null || r.Stats.Tier == expectTier;
            bool pass = rel <= RelTolerance && lseErr <= LseTolerance && relCpu <= RelTolerance && tierOk && extra(outcome)
                && r.Stats.BytesRead == (_tokens - Overlap(xs, xe, _tokens)) * Hkv * 2L * D * 2;
            return new StoreCheck(name, r.Stats.Tier, rel, lseErr, relCpu, pass, $"promoted {promoted}; {ExplainText.Render(r.Stats.Explain)}");
        }

        private static long Overlap(long xs, long xe, long n) => xe > xs ? Math.Max(0, Math.Min(xe, n) - Math.Max(xs, 0)) : 0;
    }

    /// <summary>What a query reported: the tier that ran, blocks it promoted to the GPU (−1 on the CPU), why it did not run on the GPU.</summary>
    public sealed record Outcome(string Tier, int Promoted, string DeviceReason);
}

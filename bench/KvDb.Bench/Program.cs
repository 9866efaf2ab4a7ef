using KvDb.Bench;

// One suite per invocation, so each suite's numbers come from a fresh process with nothing else in its heap.
// Suites print one JSON object per line on stdout; progress goes to stderr.
string suite = args.Length > 0 ? args[0] : string.Empty;
string[] rest = args.Length > 1 ? args[1..] : [];
switch (suite)
{
    case "exact":
        ExactSuite.Run(rest, Console.Out);
        return 0;
    case "kernels":
        KernelsSuite.Run(rest, Console.Out);
        return 0;
    case "ingest":
        await IngestSuite.RunAsync(rest);
        return 0;
    case "prefix":
        await PrefixSuite.RunAsync(rest);
        return 0;
    case "recovery":
        await RecoverySuite.RunAsync(rest);
        return 0;
    case "index":
        IndexSuite.Run(rest);
        return 0;
    case "attend":
        await AttendSuite.RunAsync(rest);
        return 0;
    case "query":
        await QuerySuite.RunAsync(rest);
        return 0;
    case "auth":
        await AuthSuite.RunAsync(rest);
        return 0;
    case "metrics":
        await MetricsSuite.RunAsync(rest);
        return 0;
    case "eviction":
        await EvictionSuite.RunAsync(rest);
        return 0;
    case "client":
        await ClientSuite.RunAsync(rest);
        return 0;
    case "fuzz-requests":
        await FuzzRequestsSuite.RunAsync(rest);
        return 0;
    case "faults":
        await FaultsSuite.RunAsync(rest);
        return 0;
    case "index-lifecycle":
        await IndexLifecycleSuite.RunAsync(rest);
        return 0;
    case "space":
        await SpaceSuite.RunAsync(rest);
        return 0;
    default:
        Console.Error.WriteLine("usage: dotnet run -c Release --project bench/KvDb.Bench -- SUITE [options]");
        Console.Error.WriteLine("suites:");
        Console.Error.WriteLine("  exact [ctx ...]   exact CPU attention over a bf16 context vs a streaming read of the same bytes");
        Console.Error.WriteLine("  auth [--ctx 32768] [--queries 200]  Attend p50 with and without authentication (open server vs tenant key, same run)");
        Console.Error.WriteLine("  metrics [--ctx 32768] [--queries 200]  Attend p50 with call metrics off vs on (same run)");
        Console.Error.WriteLine("  kernels [ctx ...] exact and 2%-gathered CPU attention vs streaming read (JSON: kernel, ctx, p50_us, bytes, achieved_gbps, reference_gbps, ratio)");
        Console.Error.WriteLine("  ingest            AppendKv of a 128K-token, 4-layer bf16 context vs raw loopback gRPC bytes");
        Console.Error.WriteLine("  prefix            LookupPrefix latency of a 128K-token prefix");
        Console.Error.WriteLine("  recovery          restart time after a crash with ~1 GB stored");
        Console.Error.WriteLine("  space [--contexts 8] [--tokens 4096] [--layers 4] [--cpu-budget 64M]   data directory vs live K/V after a checkpoint; delete half, compact while EXACT reads run: bytes before/after, compaction time, read p99 quiet vs during");
        Console.Error.WriteLine("  index [--ctx N,M] [--spec S]   index quality: scanned fraction, recall@1%, softmax mass, build time per family and budget");
        Console.Error.WriteLine("  attend [--ctx N] [--kinds exact,block,…]   one decode step per plan kind through the executor: p50, vs exact, bytes allocated per Attend");
        Console.Error.WriteLine("  query [--ctx N] [--workloads peaked,mixed] [--plans exact,auto,…] [--epsilon E] [--queries N] [--window W]   decode queries through gRPC on loopback: server p50/p99, round trip, quality vs the f64 reference, per plan (EXACT in the same run); workload real = eval/real-attention per layer, merged with a W-token local window");
        Console.Error.WriteLine("  eviction [--contexts 2000] [--tokens 128] [--cpu-percent 10] [--requests 40000] [--skew 0.99] [--workloads zipf,zipf+scan]   CPU-tier hit ratio of LRU vs TinyLFU on the same skewed read sequence (same run)");
        Console.Error.WriteLine("  client [--address URL] [--tokens 32768] [--layers 4] [--reps 3] [--attend-ctx 8192] [--queries 200]   .NET client append bytes/s and Attend p50 (the workload of clients/python/bench_client.py)");
        Console.Error.WriteLine("  fuzz-requests [--requests 100000] [--workers 4] [--seconds 1800] [--seed 16]   mutated requests over every RPC against a durable server: status histogram, requests/s, violations (INTERNAL/UNKNOWN, hangs, changed data)");
        Console.Error.WriteLine("  faults [--trials 50] [--ops append,checkpoint,index-save,tier-move,compaction]   kill -9 at random points of each operation against the real server: trials, acknowledged tokens lost, torn reads, restart p50/max");
        Console.Error.WriteLine("  index-lifecycle [--ctx N] [--families a,b]   build vs extend vs load per 1K keys when a layer grows by ctx/4; restart: load vs rebuild");
        return 2;
}

using System.Runtime.InteropServices;
using KvDb.Client;
using KvDb.Protocol.V1;
using KvDb.Workload;

namespace KvDb.Bench;

/// <summary>
/// The query suite's context: a synthetic workload appended through the client (with 32 prefill sample queries),
/// its keys and values as the server stores them (bf16 [tokens, KV heads, d], kept as bf16 so a 1M-token layer's copy
/// takes 4 GiB rather than 8) for the f64 reference,
/// and the decode queries, each with its reference output and softmax probabilities computed once.
/// </summary>
internal sealed class QueryContext
{
    private const int Chunk = 1024;
    private readonly SyntheticWorkload _workload;
    private readonly long _tokens;
    private readonly ushort[] _keys;
    private readonly ushort[] _values;
    private readonly Dictionary<int, (float[] Query, double[] Output, double[] Probabilities)> _queries = [];

    public QueryContext(SyntheticWorkload workload, long tokens)
    {
        _workload = workload;
        _tokens = tokens;
        long floats = tokens * workload.Options.NumKvHeads * workload.Options.HeadDim;
        _keys = new ushort[floats];
        _values = new ushort[floats];
    }

    public long Tokens => _tokens;

    public SyntheticWorkload Workload => _workload;

    /// <summary>The head class of <paramref name="kvHead"/>: diffuse, topical or peaked (needles).</summary>
    public string HeadClass(int kvHead) => _workload.IsDiffuseHead(kvHead) ? "diffuse" : _workload.IsTopicalHead(kvHead) ? "topical" : "peaked";

    /// <summary>Creates the context and appends every token through one AppendKv stream; returns its id.</summary>
    public async Task<string> LoadAsync(KvDbClient client, string name)
    {
        SyntheticWorkloadOptions o = _workload.Options;
        Context ctx = await client.CreateContextAsync("llama3-8b-layer", ns: name).ConfigureAwait(false);
        using KvAppendStream stream = client.OpenAppend(ctx.Id);
        await stream.WriteSampleQueriesAsync(0, _workload.Queries(32, 77), o.NumQueryHeads, o.HeadDim).ConfigureAwait(false);
        var ids = new int[Chunk];
        int rowFloats = o.NumKvHeads * o.HeadDim;
        for (long start = 0; start < _tokens; start += Chunk)
        {
            int n = (int)Math.Min(Chunk, _tokens - start);
            _workload.FillTokenIds(start, ids.AsSpan(0, n));
            byte[] k = _workload.KeyBytes(KvDType.BF16, start, n);
            byte[] v = _workload.ValueBytes(KvDType.BF16, start, n);
            MemoryMarshal.Cast<byte, ushort>(k).CopyTo(_keys.AsSpan((int)(start * rowFloats), n * rowFloats));
            MemoryMarshal.Cast<byte, ushort>(v).CopyTo(_values.AsSpan((int)(start * rowFloats), n * rowFloats));
            await stream.WriteAsync(0, ids.AsSpan(0, n), k, v, KvDType.BF16, o.NumKvHeads, o.HeadDim).ConfigureAwait(false);
            if (start % (16 * Chunk) == 0)
            {
                Console.Error.WriteLine($"query: {name}: appended {start} of {_tokens} tokens");
            }
        }

        await stream.CompleteAsync().ConfigureAwait(false);
        return ctx.Id;
    }

    /// <summary>Decode query <paramref name="i"/> (f32 [1, query heads, d]); out-of-sample seeds.</summary>
    public float[] Query(int i) => _workload.Queries(1, 9000 + (ulong)i);

    /// <summary>The f64 reference output [query heads, d] and softmax probabilities [query heads, tokens] of query <paramref name="i"/>.</summary>
    public (float[] Query, double[] Output, double[] Probabilities) Reference(int i)
    {
        lock (_queries)
        {
            if (_queries.TryGetValue(i, out var cached))
            {
                return cached;
            }
        }

        SyntheticWorkloadOptions o = _workload.Options;
        float[] q = Query(i);
        int hq = o.NumQueryHeads;
        int hkv = o.NumKvHeads;
        int d = o.HeadDim;
        int group = hq / hkv;
        double scale = 1 / Math.Sqrt(d);
        var output = new double[hq * d];
        var probabilities = new double[hq * _tokens];
        Parallel.For(0, hq, h =>
        {
            int kv = h / group;
            Span<double> p = probabilities.AsSpan((int)(h * _tokens), (int)_tokens);
            ReadOnlySpan<float> query = q.AsSpan(h * d, d);
            double max = double.NegativeInfinity;
            for (long t = 0; t < _tokens; t++)
            {
                ReadOnlySpan<ushort> k = _keys.AsSpan((int)(((t * hkv) + kv) * d), d);
                double dot = 0;
                for (int j = 0; j < d; j++)
                {
                    dot += (double)query[j] * ElementConversion.BFloat16ToSingle(k[j]);
                }

                p[(int)t] = dot * scale;
                max = Math.Max(max, p[(int)t]);
            }

            double sum = 0;
            for (long t = 0; t < _tokens; t++)
            {
                p[(int)t] = Math.Exp(p[(int)t] - max);
                sum += p[(int)t];
            }

            Span<double> o2 = output.AsSpan(h * d, d);
            for (long t = 0; t < _tokens; t++)
            {
                p[(int)t] /= sum;
                ReadOnlySpan<ushort> v = _values.AsSpan((int)(((t * hkv) + kv) * d), d);
                for (int j = 0; j < d; j++)
                {
                    o2[j] += p[(int)t] * ElementConversion.BFloat16ToSingle(v[j]);
                }
            }
        });

        lock (_queries)
        {
            _queries[i] = (q, output, probabilities);
        }

        return (q, output, probabilities);
    }
}

using KvDb.TestKit;
using KvDb.Workload;

namespace KvDb.Kernels.Tests;

public sealed class GatheredAttentionKernelTests
{
    [Theory]
    [InlineData(KvDType.F32)]
    [InlineData(KvDType.BF16)]
    [InlineData(KvDType.F16)]
    public void All_positions_match_the_exact_kernel(KvDType dtype)
    {
        using var layer = new GatheredLayer(dtype, tokens: 300, capacity: 64);
        long[] all = Enumerable.Range(0, 300).Select(i => (long)i).ToArray();
        var gathered = new float[layer.Queries.Length];
        var gatheredLse = new float[layer.NumQueries * layer.Geometry.NumQueryHeads];
        var exact = new float[gathered.Length];
        var exactLse = new float[gatheredLse.Length];
        ExactAttentionKernel.Run(layer.Geometry, layer.Blocks, layer.Queries, layer.NumQueries, 0, 0, exact, exactLse);
        for (int kv = 0; kv < layer.Geometry.NumKvHeads; kv++)
        {
            AttentionCounters c = GatheredAttentionKernel.Run(layer.Geometry, layer.Blocks, kv, all, layer.Queries, layer.NumQueries, ReadOnlySpan<float>.Empty, gathered, gatheredLse);
            Assert.Equal(300L * layer.NumQueries, c.TokensAttended);
        }

        for (int i = 0; i < exact.Length; i++)
        {
            Assert.Equal(exact[i], gathered[i], 2e-4);
        }

        for (int i = 0; i < exactLse.Length; i++)
        {
            Assert.Equal(exactLse[i], gatheredLse[i], 2e-4);
        }
    }

    [Fact]
    public void A_subset_matches_the_f64_reference_over_that_subset()
    {
        using var layer = new GatheredLayer(KvDType.F32, tokens: 500, capacity: 32);
        long[] subset = [0, 1, 2, 3, 40, 41, 99, 250, 251, 252, 400, 499];
        GeometryOf(layer, out int hq, out int hkv, out int d);
        var output = new float[layer.Queries.Length];
        var lse = new float[layer.NumQueries * hq];
        for (int kv = 0; kv < hkv; kv++)
        {
            GatheredAttentionKernel.Run(layer.Geometry, layer.Blocks, kv, subset, layer.Queries, layer.NumQueries, ReadOnlySpan<float>.Empty, output, lse);
        }

        (float[] keys, float[] values) = layer.Rows(subset);
        (double[] expected, double[] expectedLse) = ReferenceAttention.Compute(keys, values, layer.Queries, layer.NumQueries, hq, hkv, d, layer.Geometry.Scale);
        Assert.True(ReferenceAttention.MaxAbsError(output, expected) < 1e-4);
        Assert.True(ReferenceAttention.MaxAbsError(lse, expectedLse) < 1e-4);
    }

    [Fact]
    public void Log_weights_add_to_scores_and_minus_infinity_drops_a_row()
    {
        const int d = 16;
        var rng = new DeterministicRandom(9);
        float[] keys = Random(ref rng, 10 * d);
        float[] values = Random(ref rng, 10 * d);
        float[] query = Random(ref rng, d);
        int[] rows = [2, 5, 7];
        var output = new float[d];
        GatheredAttentionKernel.RunRows(query, 0.5f, keys, values, rows, [0f, MathF.Log(3f), float.NegativeInfinity], output, out float lse);

        // Reference: weights 1, 3, 0 on exp(0.5·q·k).
        double[] w = new double[2];
        double[] o = new double[d];
        for (int i = 0; i < 2; i++)
        {
            double s = 0;
            for (int j = 0; j < d; j++)
            {
                s += (double)query[j] * keys[rows[i] * d + j];
            }

            w[i] = Math.Exp(0.5 * s) * (i == 1 ? 3 : 1);
        }

        for (int j = 0; j < d; j++)
        {
            o[j] = (w[0] * values[rows[0] * d + j] + w[1] * values[rows[1] * d + j]) / (w[0] + w[1]);
            Assert.Equal(o[j], output[j], 1e-4);
        }

        Assert.Equal(Math.Log(w[0] + w[1]), lse, 1e-4);

        GatheredAttentionKernel.RunRows(query, 0.5f, keys, values, [], [], output, out float empty);
        Assert.Equal(float.NegativeInfinity, empty);
        Assert.All(output, x => Assert.Equal(0f, x));
    }

    [Theory]
    [InlineData(KvDType.F32)]
    [InlineData(KvDType.BF16)]
    public void Block_reader_returns_a_heads_rows_in_position_order(KvDType dtype)
    {
        using var layer = new GatheredLayer(dtype, tokens: 150, capacity: 64);
        Assert.Equal(150, KvBlockReader.CountRows(layer.Blocks));
        var rows = new float[150 * 32];
        var positions = new long[150];
        int n = KvBlockReader.ReadHeadRows(layer.Geometry, layer.Blocks, 1, values: false, rows, positions);
        Assert.Equal(150, n);
        long[] all = Enumerable.Range(0, 150).Select(i => (long)i).ToArray();
        Assert.Equal(all, positions);
        (float[] keys, _) = layer.Rows(all);
        for (int t = 0; t < 150; t++)
        {
            Assert.Equal(keys.AsSpan((t * 2 + 1) * 32, 32).ToArray(), rows.AsSpan(t * 32, 32).ToArray());
        }
    }

    [Theory]
    [InlineData(KvDType.F32)]
    [InlineData(KvDType.BF16)]
    public void Scattered_reads_return_each_positions_key_and_value_rows(KvDType dtype)
    {
        // 100 scattered positions (more than one 64-row batch of addresses, across three blocks, tail included).
        using var layer = new GatheredLayer(dtype, tokens: 150, capacity: 64);
        long[] positions = Enumerable.Range(0, 100).Select(i => (long)((i * 37) % 150)).Order().Distinct().ToArray();
        int d = layer.Geometry.HeadDim;
        var keys = new float[positions.Length * d];
        var values = new float[positions.Length * d];
        var keysAlone = new float[positions.Length * d];
        var valuesAlone = new float[positions.Length * d];
        KvBlockReader.ReadHeadRowPairsAt(layer.Geometry, layer.Blocks, 1, positions, keys, values);
        KvBlockReader.ReadHeadRowsAt(layer.Geometry, layer.Blocks, 1, values: false, positions, keysAlone);
        KvBlockReader.ReadHeadRowsAt(layer.Geometry, layer.Blocks, 1, values: true, positions, valuesAlone);

        (float[] allKeys, float[] allValues) = layer.Rows(Enumerable.Range(0, 150).Select(i => (long)i).ToArray());
        for (int i = 0; i < positions.Length; i++)
        {
            int source = (int)((positions[i] * 2) + 1) * d;
            Assert.Equal(allKeys.AsSpan(source, d).ToArray(), keys.AsSpan(i * d, d).ToArray());
            Assert.Equal(allValues.AsSpan(source, d).ToArray(), values.AsSpan(i * d, d).ToArray());
        }

        Assert.Equal(keys, keysAlone);
        Assert.Equal(values, valuesAlone);
        Assert.Throws<ArgumentOutOfRangeException>(() => KvBlockReader.ReadHeadRowPairsAt(layer.Geometry, layer.Blocks, 1, [3, 150], keys, values));
    }

    private static void GeometryOf(GatheredLayer layer, out int hq, out int hkv, out int d)
    {
        hq = layer.Geometry.NumQueryHeads;
        hkv = layer.Geometry.NumKvHeads;
        d = layer.Geometry.HeadDim;
    }

    private static float[] Random(ref DeterministicRandom rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = (float)rng.NextGaussian();
        }

        return v;
    }

    /// <summary>A small layer in native blocks (the store's layout) from the synthetic workload, plus its queries.</summary>
    private sealed class GatheredLayer : IDisposable
    {
        private readonly NativeKvBlocks _blocks;
        private readonly float[] _keys;
        private readonly float[] _values;

        public GatheredLayer(KvDType dtype, int tokens, int capacity)
        {
            var options = new SyntheticWorkloadOptions { Tokens = tokens, NumKvHeads = 2, NumQueryHeads = 4, HeadDim = 32 };
            var workload = new SyntheticWorkload(options);
            Geometry = new AttentionGeometry(4, 2, 32, capacity, dtype, 1f / MathF.Sqrt(32));
            _keys = new float[tokens * 2 * 32];
            _values = new float[tokens * 2 * 32];
            workload.FillKeys(0, tokens, _keys);
            workload.FillValues(0, tokens, _values);

            // Round-trip through the dtype so the f64 reference sees exactly what the kernel reads.
            _keys = ElementConversion.ToSingle(dtype, ElementConversion.FromSingle(dtype, _keys));
            _values = ElementConversion.ToSingle(dtype, ElementConversion.FromSingle(dtype, _values));
            NumQueries = 2;
            Queries = workload.Queries(NumQueries, 11);
            _blocks = new NativeKvBlocks(Geometry, ElementConversion.FromSingle(dtype, _keys), ElementConversion.FromSingle(dtype, _values), NativeKvBlocks.ZeroPadding);
        }

        public AttentionGeometry Geometry { get; }

        public KvBlockRef[] Blocks => _blocks.Blocks;

        public float[] Queries { get; }

        public int NumQueries { get; }

        /// <summary>Keys and values of <paramref name="positions"/> as [n, kvHeads, dim] f32.</summary>
        public (float[] Keys, float[] Values) Rows(long[] positions)
        {
            int width = 2 * 32;
            var keys = new float[positions.Length * width];
            var values = new float[positions.Length * width];
            for (int i = 0; i < positions.Length; i++)
            {
                _keys.AsSpan((int)positions[i] * width, width).CopyTo(keys.AsSpan(i * width, width));
                _values.AsSpan((int)positions[i] * width, width).CopyTo(values.AsSpan(i * width, width));
            }

            return (keys, values);
        }

        public void Dispose() => _blocks.Dispose();
    }
}

using System.Runtime.InteropServices;
using System.Text.Json;

namespace KvDb.Workload;

/// <summary>
/// The real-attention evaluation set under <c>eval/real-attention/</c>: post-RoPE keys, values and queries of
/// every layer of a small transformer trained on local text (issue 12). Synthetic workloads plant the
/// structure they are asked for; real models also have diffuse early layers and peaked later ones, which is
/// what an index's recall and a plan's head selection must survive, so benchmarks and tests check against
/// this set too. The files are raw little-endian float16 described by <c>manifest.json</c>; everything is
/// widened to float here because that is what the kernels and <see cref="ReferenceAttention"/> take.
/// </summary>
public sealed class RealAttentionSet
{
    private const string RelativeManifest = "eval/real-attention/manifest.json";
    private readonly Dictionary<string, int[]> _shapes;
    private readonly Dictionary<int, IReadOnlyList<RealAttentionLayerSummary>> _summaries;

    private RealAttentionSet(string directory, JsonElement root)
    {
        Directory = directory;
        Layers = root.GetProperty("layers").GetInt32();
        Heads = root.GetProperty("heads").GetInt32();
        KvHeads = root.GetProperty("kv_heads").GetInt32();
        HeadDim = root.GetProperty("head_dim").GetInt32();
        Tokens = root.GetProperty("tokens").GetInt32();
        Scale = root.GetProperty("model").GetProperty("scale").GetDouble();
        JsonElement sets = root.GetProperty("query_sets");
        DecodePositions = Ints(sets.GetProperty("decode"));
        PrefillPositions = Ints(sets.GetProperty("prefill"));
        TrainBitsPerByte = root.GetProperty("training").GetProperty("final_train_bits_per_byte").GetDouble();

        _shapes = [];
        foreach (JsonElement f in root.GetProperty("files").EnumerateArray())
        {
            _shapes[f.GetProperty("name").GetString()!] = Ints(f.GetProperty("shape"));
        }

        var sequences = new List<RealAttentionSequence>();
        foreach (JsonElement s in root.GetProperty("sequences").EnumerateArray())
        {
            int index = s.GetProperty("index").GetInt32();
            sequences.Add(new RealAttentionSequence(
                index,
                s.GetProperty("source").GetString() ?? "",
                s.GetProperty("tokens").GetInt32(),
                s.GetProperty("heldout_bits_per_byte").GetDouble(),
                s.GetProperty("dumped").GetBoolean()));
        }

        Sequences = sequences;
        var summaries = new Dictionary<int, IReadOnlyList<RealAttentionLayerSummary>>();
        foreach (JsonElement s in root.GetProperty("summary").EnumerateArray())
        {
            var layers = new List<RealAttentionLayerSummary>();
            foreach (JsonElement l in s.GetProperty("layers").EnumerateArray())
            {
                layers.Add(new RealAttentionLayerSummary(
                    l.GetProperty("layer").GetInt32(),
                    l.GetProperty("decode_mean_top95_tokens").GetDouble(),
                    l.GetProperty("decode_mean_max_weight").GetDouble(),
                    Doubles(l.GetProperty("decode_per_head_top95_tokens")),
                    Doubles(l.GetProperty("decode_per_head_max_weight")),
                    l.GetProperty("prefill_mean_top95_tokens").GetDouble(),
                    l.GetProperty("prefill_mean_max_weight").GetDouble()));
            }

            summaries[s.GetProperty("sequence").GetInt32()] = layers;
        }

        _summaries = summaries;
        if (root.TryGetProperty("probe", out JsonElement probe) && probe.ValueKind == JsonValueKind.Object)
        {
            Probe = new RealAttentionProbe(
                probe.GetProperty("sequence").GetInt32(),
                probe.GetProperty("layer").GetInt32(),
                probe.GetProperty("query").GetInt32(),
                probe.GetProperty("head").GetInt32(),
                probe.GetProperty("position").GetInt32(),
                probe.GetProperty("top_token").GetInt32(),
                probe.GetProperty("top_weight").GetDouble());
        }
    }

    /// <summary>The folder holding the manifest and the dumps.</summary>
    public string Directory { get; }

    /// <summary>Transformer layers; every one is dumped, so the diffuse-to-peaked progression is visible.</summary>
    public int Layers { get; }

    /// <summary>Query heads per layer.</summary>
    public int Heads { get; }

    /// <summary>KV heads per layer; query head h reads KV head h / (Heads / KvHeads).</summary>
    public int KvHeads { get; }

    /// <summary>Channels per head.</summary>
    public int HeadDim { get; }

    /// <summary>Tokens per sequence (byte-level: one token per byte of the source text).</summary>
    public int Tokens { get; }

    /// <summary>The softmax scale the model used (1/√HeadDim); queries are stored unscaled.</summary>
    public double Scale { get; }

    /// <summary>Absolute positions of the decode queries (the last positions of each sequence), in file order.</summary>
    public IReadOnlyList<int> DecodePositions { get; }

    /// <summary>Absolute positions of the prefill sample queries (evenly spaced before the decode block).</summary>
    public IReadOnlyList<int> PrefillPositions { get; }

    /// <summary>The model's training loss at the end of training, bits per byte (how "real" the model is).</summary>
    public double TrainBitsPerByte { get; }

    /// <summary>One softmax row the generator spelled out (its largest weight and where), for readers to check against; null in sets without one.</summary>
    public RealAttentionProbe? Probe { get; }

    /// <summary>Every held-out sequence the manifest describes; only those with <c>Dumped</c> have files.</summary>
    public IReadOnlyList<RealAttentionSequence> Sequences { get; }

    /// <summary>
    /// Finds <c>eval/real-attention/manifest.json</c> by walking up from the running assembly's folder, so
    /// tests and benchmarks find the committed set wherever the build output lands; null when absent.
    /// </summary>
    public static string? Locate()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, RelativeManifest);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Reads the manifest; the dumps are read per layer by <see cref="Layer"/>, since all of them are megabytes.</summary>
    public static RealAttentionSet Load(string manifestPath)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(manifestPath));
        string format = doc.RootElement.GetProperty("format").GetString() ?? "";
        if (format != "kvdb-real-attention/1")
        {
            throw new InvalidDataException($"unknown real-attention format '{format}' in {manifestPath}");
        }

        return new RealAttentionSet(Path.GetDirectoryName(Path.GetFullPath(manifestPath))!, doc.RootElement);
    }

    /// <summary>The manifest's per-layer softmax summary of one sequence (present for undumped sequences too).</summary>
    public IReadOnlyList<RealAttentionLayerSummary> Summary(int sequence) => _summaries[sequence];

    /// <summary>The source bytes (= token ids) of a dumped sequence.</summary>
    public byte[] TokenIds(int sequence) => File.ReadAllBytes(Path.Combine(Directory, $"seq{sequence}.tokens.u8"));

    /// <summary>Loads one layer of one dumped sequence: keys and values [Tokens, KvHeads, HeadDim], queries [n, Heads, HeadDim].</summary>
    public RealAttentionLayer Layer(int sequence, int layer)
    {
        if ((uint)layer >= (uint)Layers)
        {
            throw new ArgumentOutOfRangeException(nameof(layer));
        }

        string prefix = $"seq{sequence}.layer{layer}.";
        return new RealAttentionLayer(
            this,
            sequence,
            layer,
            ReadHalf(prefix + "k.f16", Tokens, KvHeads, HeadDim),
            ReadHalf(prefix + "v.f16", Tokens, KvHeads, HeadDim),
            ReadHalf(prefix + "q_decode.f16", DecodePositions.Count, Heads, HeadDim),
            ReadHalf(prefix + "q_prefill.f16", PrefillPositions.Count, Heads, HeadDim));
    }

    private float[] ReadHalf(string name, params int[] shape)
    {
        if (!_shapes.TryGetValue(name, out int[]? declared) || !declared.SequenceEqual(shape))
        {
            throw new InvalidDataException($"{name}: manifest shape does not match the model shape [{string.Join(", ", shape)}]");
        }

        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("the dumps are little-endian float16");
        }

        byte[] bytes = File.ReadAllBytes(Path.Combine(Directory, name));
        int count = shape.Aggregate(1, (a, b) => a * b);
        if (bytes.Length != count * 2)
        {
            throw new InvalidDataException($"{name}: {bytes.Length} bytes, expected {count * 2}");
        }

        ReadOnlySpan<Half> halves = MemoryMarshal.Cast<byte, Half>(bytes);
        var result = new float[count];
        for (int i = 0; i < count; i++)
        {
            result[i] = (float)halves[i];
        }

        return result;
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private static double[] Doubles(JsonElement array) => array.EnumerateArray().Select(e => e.GetDouble()).ToArray();
}

/// <summary>One held-out document run through the model; <paramref name="Dumped"/> tells whether its q/k/v files exist (size limits).</summary>
public sealed record RealAttentionSequence(int Index, string Source, int Tokens, double HeldOutBitsPerByte, bool Dumped);

/// <summary>
/// One decode softmax row as the generator computed it in float64 from the float16 files: decode query
/// <paramref name="Query"/> (absolute <paramref name="Position"/>) of <paramref name="Layer"/>, query head
/// <paramref name="Head"/>; its largest weight <paramref name="TopWeight"/> falls on token <paramref name="TopToken"/>.
/// </summary>
public sealed record RealAttentionProbe(int Sequence, int Layer, int Query, int Head, int Position, int TopToken, double TopWeight);

/// <summary>
/// The manifest's concentration summary of a layer's causal softmax: how many top tokens hold 95% of the
/// mass and the largest weight, averaged over the query set and heads. Small counts / large maxima mean a
/// peaked layer, where a top-k index can be exact with few tokens; large counts mean a diffuse one.
/// </summary>
public sealed record RealAttentionLayerSummary(
    int Layer,
    double DecodeMeanTop95Tokens,
    double DecodeMeanMaxWeight,
    IReadOnlyList<double> DecodePerHeadTop95Tokens,
    IReadOnlyList<double> DecodePerHeadMaxWeight,
    double PrefillMeanTop95Tokens,
    double PrefillMeanMaxWeight);

/// <summary>One layer of one sequence, widened to float: the layouts <see cref="ReferenceAttention"/> takes.</summary>
public sealed class RealAttentionLayer
{
    private readonly RealAttentionSet _set;

    internal RealAttentionLayer(RealAttentionSet set, int sequence, int layer, float[] keys, float[] values, float[] decodeQueries, float[] prefillQueries)
    {
        _set = set;
        Sequence = sequence;
        Layer = layer;
        Keys = keys;
        Values = values;
        DecodeQueries = decodeQueries;
        PrefillQueries = prefillQueries;
    }

    /// <summary>Which sequence.</summary>
    public int Sequence { get; }

    /// <summary>Which layer.</summary>
    public int Layer { get; }

    /// <summary>Post-RoPE keys [Tokens, KvHeads, HeadDim].</summary>
    public float[] Keys { get; }

    /// <summary>Values [Tokens, KvHeads, HeadDim].</summary>
    public float[] Values { get; }

    /// <summary>Post-RoPE decode queries [DecodePositions.Count, Heads, HeadDim], unscaled.</summary>
    public float[] DecodeQueries { get; }

    /// <summary>Post-RoPE prefill sample queries [PrefillPositions.Count, Heads, HeadDim], unscaled.</summary>
    public float[] PrefillQueries { get; }

    /// <summary>
    /// The float64 causal softmax of decode query <paramref name="query"/> for query head <paramref name="head"/>
    /// over keys 0..its position, as the model computed it (causal mask, the model's scale, GQA mapping).
    /// </summary>
    public double[] DecodeWeights(int query, int head) =>
        CausalWeights(DecodeQueries, query, _set.DecodePositions[query], head);

    /// <summary>As <see cref="DecodeWeights"/>, for a prefill sample query.</summary>
    public double[] PrefillWeights(int query, int head) =>
        CausalWeights(PrefillQueries, query, _set.PrefillPositions[query], head);

    private double[] CausalWeights(float[] queries, int query, int position, int head)
    {
        int d = _set.HeadDim;
        int kv = head / (_set.Heads / _set.KvHeads);
        ReadOnlySpan<float> q = queries.AsSpan((query * _set.Heads + head) * d, d);
        var w = new double[position + 1];
        double max = double.NegativeInfinity;
        for (int j = 0; j <= position; j++)
        {
            ReadOnlySpan<float> k = Keys.AsSpan((j * _set.KvHeads + kv) * d, d);
            double dot = 0;
            for (int i = 0; i < d; i++)
            {
                dot += (double)q[i] * k[i];
            }

            w[j] = dot * _set.Scale;
            max = Math.Max(max, w[j]);
        }

        double sum = 0;
        for (int j = 0; j < w.Length; j++)
        {
            w[j] = Math.Exp(w[j] - max);
            sum += w[j];
        }

        for (int j = 0; j < w.Length; j++)
        {
            w[j] /= sum;
        }

        return w;
    }
}

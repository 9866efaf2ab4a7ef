namespace KvDb.Store;

/// <summary>A stored sequence: its model, namespace, token ids and per-layer blocks. Guarded by its own lock.</summary>
internal sealed class KvContext
{
    public KvContext(string id, ModelSchema model, string ns)
    {
        Id = id;
        Model = model;
        Namespace = ns;
        Layers = new ContextLayer[model.NumLayers];
        for (int i = 0; i < Layers.Length; i++)
        {
            Layers[i] = new ContextLayer();
        }
    }

    public object Gate { get; } = new();

    public string Id { get; }

    public ModelSchema Model { get; }

    public string Namespace { get; }

    public ContextLayer[] Layers { get; }

    /// <summary>Token ids of positions [0, max layer length); every layer's chunks must agree with them.</summary>
    public List<int> TokenIds { get; } = [];

    public bool AppendOpen { get; set; }

    public bool Deleted { get; set; }

    public long NumTokens
    {
        get
        {
            long min = long.MaxValue;
            foreach (ContextLayer l in Layers)
            {
                min = Math.Min(min, l.Length);
            }

            return min;
        }
    }

    public ContextInfo Info()
    {
        var perLayer = new long[Layers.Length];
        long blocks = 0;
        for (int i = 0; i < Layers.Length; i++)
        {
            perLayer[i] = Layers[i].Length;
            blocks += Layers[i].Blocks.Count;
        }

        return new ContextInfo(Id, Model.Name, Namespace, NumTokens, perLayer, blocks * Model.BlockBytes);
    }
}

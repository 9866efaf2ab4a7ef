using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using KvDb.Kernels;

namespace KvDb.Store;

/// <summary>
/// The models a store knows, by name (ordinal). Reads are lock-free; the store adds under its metadata lock so
/// the log order of Model records equals the order models appear in. Schemas are normalized before they get here.
/// </summary>
internal sealed class ModelRegistry
{
    private readonly ConcurrentDictionary<string, ModelSchema> _models = new(StringComparer.Ordinal);

    /// <summary>Models registered.</summary>
    public int Count => _models.Count;

    /// <summary>Every model, in no particular order (checkpoints).</summary>
    public ICollection<ModelSchema> All => _models.Values;

    /// <summary>The model named <paramref name="name"/>, or NOT_FOUND.</summary>
    public ModelSchema Get(string name) =>
        TryGet(name, out ModelSchema? m)
            ? m
            : throw KvDbException.NotFound($"model \"{name}\" does not exist; create it with Models.CreateModel first");

    /// <summary>The model named <paramref name="name"/> when there is one.</summary>
    public bool TryGet(string? name, [NotNullWhen(true)] out ModelSchema? model) => _models.TryGetValue(name ?? string.Empty, out model);

    /// <summary>All models, by name.</summary>
    public IReadOnlyList<ModelSchema> List()
    {
        var list = new List<ModelSchema>(_models.Values);
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    /// <summary>
    /// Registers a normalized schema: true when it is new, false when an identical one exists (creation is
    /// idempotent); ALREADY_EXISTS when the name is taken by a different schema. Metadata lock held.
    /// </summary>
    public bool TryAdd(ModelSchema normalized, out ModelSchema registered)
    {
        if (_models.TryGetValue(normalized.Name, out ModelSchema? existing))
        {
            if (existing == normalized)
            {
                registered = existing;
                return false;
            }

            throw new KvDbException(KvDbErrorCode.AlreadyExists, $"model \"{normalized.Name}\" exists with a different schema ({Describe(existing)}); use another name or send the identical schema");
        }

        _models[normalized.Name] = normalized;
        registered = normalized;
        return true;
    }

    /// <summary>Puts a checkpointed model back (recovery, before anything else is registered).</summary>
    public void Restore(ModelSchema model) => _models[model.Name] = model;

    private static string Describe(ModelSchema m) =>
        $"layers {m.NumLayers}, query heads {m.NumQueryHeads}, kv heads {m.NumKvHeads}, head_dim {m.HeadDim}, dtype {KvDTypeInfo.Name(m.DType)}, block {m.BlockSize}, scale {m.SoftmaxScale}";
}

using Grpc.Core;
using KvDb.Protocol.V1;
using KvDb.Store;

namespace KvDb.Server.Services;

/// <summary>kvdb.v1.Models: declare and read model schemas.</summary>
public sealed class ModelsService : Models.ModelsBase
{
    private readonly IKvStore _store;

    /// <summary>Creates the service over the store.</summary>
    public ModelsService(IKvStore store)
    {
        _store = store;
    }

    /// <inheritdoc />
    public override Task<Model> CreateModel(CreateModelRequest request, ServerCallContext context) =>
        Task.FromResult(WireMapping.ToWire(_store.CreateModel(WireMapping.ToSchema(request.Model))));

    /// <inheritdoc />
    public override Task<Model> GetModel(GetModelRequest request, ServerCallContext context) =>
        Task.FromResult(WireMapping.ToWire(_store.GetModel(request.Name)));

    /// <inheritdoc />
    public override Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var response = new ListModelsResponse();
        foreach (ModelSchema m in _store.ListModels())
        {
            response.Models.Add(WireMapping.ToWire(m));
        }

        return Task.FromResult(response);
    }
}
